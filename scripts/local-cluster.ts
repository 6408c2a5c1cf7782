/**
 * The whole HA topology on loopback, with real processes: a MariaDB primary + replica,
 * webserver1 and webserver2 (the built app, pointing at the pair) and HAProxy with the real
 * deploy/haproxy/haproxy.cfg. The same topology as compose.yaml.
 *
 *   npm run cluster            start it, import the sample data, print the URLs, return
 *   npm run cluster -- down    stop exactly the processes `npm run cluster` started
 *
 * Tests use startLocalCluster() directly and stop it themselves.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  freePort,
  missingMariadbBinaries,
  startMariadbPair,
  type MariadbPair,
} from './mariadb-pair.js';
import { SERVE_NODE_FLAGS } from './serve-node-flags.js';

const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));
const READY_TIMEOUT_MS = 30_000;

/** A process of the cluster that can be stopped, killed and started again on the same port. */
export interface ClusterProcess {
  name: string;
  url: string;
  logFile: string;
  pid(): number | undefined;
  isRunning(): boolean;
  /** Starts it and resolves once it answers. */
  start(): Promise<void>;
  /** Sends `signal` and resolves once the process has exited, with its exit code (null: killed). */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface LocalCluster {
  dir: string;
  pair: MariadbPair;
  webservers: [ClusterProcess, ClusterProcess];
  haproxy: ClusterProcess;
  lbUrl: string;
  statsUrl: string;
  statsUser: string;
  statsPassword: string;
  adminToken: string;
  stop(): Promise<void>;
}

/** The binaries the cluster needs that this machine lacks (empty when all are there). */
export function missingClusterBinaries(): string[] {
  return [...missingMariadbBinaries(), ...(findBinary('haproxy') === undefined ? ['haproxy'] : [])];
}

export function findBinary(name: string): string | undefined {
  for (const folder of [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/bin']) {
    const path = join(folder, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // Not in this folder; try the next one.
    }
  }
  return undefined;
}

function requireHaproxy(): string {
  const binary = findBinary('haproxy');
  if (binary === undefined) throw new Error('haproxy not found: apt-get install -y haproxy');
  return binary;
}

export async function startLocalCluster(options: {
  dir: string;
  env?: NodeJS.ProcessEnv;
}): Promise<LocalCluster> {
  const { dir } = options;
  mkdirSync(dir, { recursive: true });
  requireHaproxy(); // before the pair: failing late would leave nothing to show for the wait
  const pair = await startMariadbPair();
  const started: ClusterProcess[] = [];
  try {
    const adminToken = randomBytes(24).toString('hex');
    const statsPassword = randomBytes(12).toString('hex');
    const [port1, port2, lbPort, statsPort] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    const webserver = (name: string, port: number) =>
      managedProcess({
        name,
        url: `http://127.0.0.1:${port}`,
        readyPath: '/livez',
        logFile: join(dir, `${name}.log`),
        command: process.execPath,
        args: [...SERVE_NODE_FLAGS, join(REPO_ROOT, 'dist/main.js'), 'serve'],
        env: {
          PATH: process.env.PATH,
          HOST: '127.0.0.1',
          PORT: String(port),
          SERVER_NAME: name,
          DATABASE_URL: pair.primary.url,
          DATABASE_REPLICA_URLS: pair.replica.url,
          DATA_FILE: join(REPO_ROOT, 'data/users.csv'),
          ADMIN_TOKEN: adminToken,
          ...options.env,
        },
      });
    const webservers: [ClusterProcess, ClusterProcess] = [
      webserver('webserver1', port1),
      webserver('webserver2', port2),
    ];
    for (const server of webservers) {
      await server.start();
      started.push(server);
    }
    const haproxy = haproxyProcess({
      logFile: join(dir, 'haproxy.log'),
      lbPort,
      statsPort,
      statsPassword,
      appAddrs: [`127.0.0.1:${port1}`, `127.0.0.1:${port2}`],
    });
    await haproxy.start();
    started.push(haproxy);
    return {
      dir,
      pair,
      webservers,
      haproxy,
      lbUrl: haproxy.url,
      statsUrl: `http://127.0.0.1:${statsPort}`,
      statsUser: 'admin',
      statsPassword,
      adminToken,
      async stop() {
        await Promise.all(started.map((process) => process.stop('SIGKILL')));
        await pair.stop();
      },
    };
  } catch (error) {
    await Promise.all(started.map((process) => process.stop('SIGKILL')));
    await pair.stop();
    throw error;
  }
}

/**
 * HAProxy with the real config in front of two app addresses (not started), listening on `addr`
 * (default loopback).
 */
export function haproxyProcess(options: {
  logFile: string;
  lbPort: number;
  statsPort: number;
  statsPassword: string;
  appAddrs: [string, string];
  addr?: string;
  env?: NodeJS.ProcessEnv;
}): ClusterProcess {
  const addr = options.addr ?? '127.0.0.1';
  return managedProcess({
    name: 'haproxy',
    url: `http://${addr}:${options.lbPort}`,
    readyPath: '/healthcheck',
    logFile: options.logFile,
    command: requireHaproxy(),
    args: ['-db', '-f', join(REPO_ROOT, 'deploy/haproxy/haproxy.cfg')],
    env: {
      LB_ADDR: addr,
      LB_PORT: String(options.lbPort),
      STATS_ADDR: addr,
      STATS_PORT: String(options.statsPort),
      STATS_PASSWORD: options.statsPassword,
      APP1_ADDR: options.appAddrs[0],
      APP2_ADDR: options.appAddrs[1],
      ...options.env,
    },
  });
}

interface ProcessSpec {
  name: string;
  url: string;
  readyPath: string;
  logFile: string;
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
}

function managedProcess(spec: ProcessSpec): ClusterProcess {
  let child: ChildProcess | undefined;
  let exited: Promise<number | null> = Promise.resolve(null);
  const isRunning = () =>
    child !== undefined && child.exitCode === null && child.signalCode === null;
  return {
    name: spec.name,
    url: spec.url,
    logFile: spec.logFile,
    pid: () => child?.pid,
    isRunning,
    async start() {
      const log = openSync(spec.logFile, 'a');
      // Its own session: a Ctrl-C in the terminal that ran `npm run cluster` does not reach it.
      child = spawn(spec.command, spec.args, {
        env: spec.env,
        detached: true,
        stdio: ['ignore', log, log],
      });
      closeSync(log);
      // Not holding the event loop: `npm run cluster` returns and leaves the process running.
      child.unref();
      exited = once(child, 'exit').then(([code]) => code as number | null);
      const deadline = Date.now() + READY_TIMEOUT_MS;
      while (Date.now() < deadline && isRunning()) {
        const response = await fetch(`${spec.url}${spec.readyPath}`).catch(() => undefined);
        if (response?.ok === true) return;
        await sleep(100);
      }
      const tail = readFileSync(spec.logFile, 'utf8').split('\n').slice(-10).join('\n');
      if (isRunning()) child.kill('SIGKILL');
      throw new Error(`${spec.name} did not become ready; last log lines:\n${tail}`);
    },
    async stop(signal = 'SIGTERM') {
      child?.ref(); // keep the event loop alive until the exit is seen
      if (isRunning()) child?.kill(signal);
      return exited;
    },
  };
}

// ---- npm run cluster [down] ---------------------------------------------------------------

const CLUSTER_DIR = join(REPO_ROOT, '.cluster');
const STATE_FILE = join(CLUSTER_DIR, 'state.json');

interface ClusterState {
  /** Each process's pid and start time (/proc/PID/stat field 22): a reused pid is not ours. */
  processes: Record<string, { pid: number; startedAt: string | undefined }>;
  /** The MariaDB pair's temp folder, removed by `down`. */
  dataDir: string;
}

async function up(): Promise<void> {
  if (existsSync(STATE_FILE)) {
    throw new Error(`a cluster is already running (${STATE_FILE}); run: npm run cluster -- down`);
  }
  const missing = missingClusterBinaries();
  if (missing.length > 0) {
    throw new Error(
      `missing ${missing.join(', ')}: apt-get install -y haproxy mariadb-server mariadb-client`,
    );
  }
  if (!existsSync(join(REPO_ROOT, 'dist/main.js')))
    throw new Error('dist/ is missing: run npm run build');
  const cluster = await startLocalCluster({ dir: CLUSTER_DIR });
  const processes: ClusterState['processes'] = {};
  const record = (name: string, pid: number | undefined) => {
    if (pid !== undefined) processes[name] = { pid, startedAt: processStartTime(pid) };
  };
  for (const process of [...cluster.webservers, cluster.haproxy])
    record(process.name, process.pid());
  record('mariadb-primary', cluster.pair.primary.pid());
  record('mariadb-replica', cluster.pair.replica.pid());
  const state: ClusterState = { processes, dataDir: join(cluster.pair.primary.dir, '..') };
  writeFileSync(STATE_FILE, JSON.stringify(state, null, 2));
  const users = (await (await fetch(`${cluster.lbUrl}/api`)).json()) as unknown[];
  console.log(
    [
      `users-api local cluster is up (${users.length} users, imported by webserver1 on start).`,
      '',
      `  load balancer   ${cluster.lbUrl}/api   ${cluster.lbUrl}/healthcheck`,
      `  HAProxy stats   ${cluster.statsUrl}/   (user ${cluster.statsUser}, password ${cluster.statsPassword})`,
      `  HAProxy metrics ${cluster.statsUrl}/metrics   (the same user and password)`,
      `  webserver1      ${cluster.webservers[0].url}   (active)`,
      `  webserver2      ${cluster.webservers[1].url}   (backup)`,
      `  MariaDB         primary ${cluster.pair.primary.url.replace(/:[^:@/]*@/, ':***@')}`,
      `                  replica ${cluster.pair.replica.url.replace(/:[^:@/]*@/, ':***@')}`,
      `  admin token     ${cluster.adminToken}`,
      `  logs            ${CLUSTER_DIR}/*.log, MariaDB: ${state.dataDir}/*/error.log`,
      '',
      'Stop it with: npm run cluster -- down',
    ].join('\n'),
  );
}

async function down(): Promise<void> {
  if (!existsSync(STATE_FILE)) {
    console.log('no local cluster is running');
    return;
  }
  const state = JSON.parse(readFileSync(STATE_FILE, 'utf8')) as Partial<ClusterState> & {
    pids?: Record<string, number>;
  };
  if (state.processes === undefined || state.dataDir === undefined) {
    // Written before start times were recorded: its pids may have been reused since.
    throw new Error(
      `${STATE_FILE} comes from an older version (pids ${JSON.stringify(state.pids ?? {})}): check and stop those processes by hand, then delete it`,
    );
  }
  await Promise.all(
    Object.entries(state.processes).map(async ([name, { pid, startedAt }]) => {
      if (startedAt === undefined || processStartTime(pid) !== startedAt) {
        console.log(`${name} (pid ${pid}) had already stopped`);
        return;
      }
      await stopByPid(pid);
      console.log(`stopped ${name} (pid ${pid})`);
    }),
  );
  rmSync(state.dataDir, { recursive: true, force: true });
  rmSync(STATE_FILE);
}

/** When the process started, in clock ticks since boot; undefined once it is gone. */
function processStartTime(pid: number): string | undefined {
  try {
    // The command name (field 2) may hold spaces and parentheses: count from its closing one.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(') ') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/**
 * SIGTERM, then SIGKILL after 15 s. A process that is not our child is reaped by someone else,
 * and until then `kill -0` still succeeds on its zombie: so the process state is what counts.
 */
async function stopByPid(pid: number): Promise<void> {
  const alive = () => {
    try {
      const state = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.[0];
      return state !== undefined && state !== 'Z' && state !== 'X';
    } catch {
      return false;
    }
  };
  if (!alive()) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 15_000;
  while (alive() && Date.now() < deadline) await sleep(100);
  if (alive()) process.kill(pid, 'SIGKILL');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const command = process.argv[2] ?? 'up';
  try {
    if (command === 'up') await up();
    else if (command === 'down') await down();
    else throw new Error(`unknown command ${command}: use up (default) or down`);
  } catch (error) {
    console.error(`cluster: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  }
}
