/**
 * The whole HA topology on loopback, with real processes: a MariaDB primary + replica,
 * webserver1 and webserver2 (the built app, pointing at the pair) and HAProxy with the real
 * deploy/haproxy/haproxy.cfg. The same topology as compose.yaml.
 *
 *   npm run cluster            start it, import the sample data, print the URLs, return
 *   npm run cluster -- --tls   the same, HAProxy also serving HTTPS with a local CA's certificate
 *   npm run cluster -- reload  check HAProxy's config and reload it (SIGUSR2), dropping nothing
 *   npm run cluster -- down    stop exactly the processes `npm run cluster` started
 *
 * Tests use startLocalCluster() directly and stop it themselves.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
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
  statSync,
  writeFileSync,
} from 'node:fs';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createCertificateAuthority, issueServerCertificate } from './local-certificates.js';
import {
  freePort,
  missingMariadbBinaries,
  startMariadbPair,
  type MariadbPair,
} from './mariadb-pair.js';
import { SERVE_NODE_FLAGS } from './serve-node-flags.js';

const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));
const HAPROXY_CONFIG = join(REPO_ROOT, 'deploy/haproxy/haproxy.cfg');
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

/** HAProxy in master-worker mode; its settings live in a file it reads again at every reload. */
export interface HaproxyProcess extends ClusterProcess {
  /** The `setenv` lines HAProxy reads before haproxy.cfg (see writeHaproxyEnvFile). */
  envFile: string;
  /**
   * Applies `changes` to the settings (undefined or empty: unset), checks the config and reloads
   * HAProxy; resolves once the new worker serves. The certificate file is read again too.
   */
  reload(changes?: NodeJS.ProcessEnv): Promise<void>;
}

export interface LocalCluster {
  dir: string;
  pair: MariadbPair;
  webservers: [ClusterProcess, ClusterProcess];
  haproxy: HaproxyProcess;
  lbUrl: string;
  /** With `tls`: HAProxy's HTTPS URL, and the root certificate that verifies it. */
  lbTlsUrl?: string;
  caFile?: string;
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
  /** HTTPS too, with a certificate for localhost and 127.0.0.1 from a CA made in dir/tls. */
  tls?: boolean;
}): Promise<LocalCluster> {
  const { dir } = options;
  mkdirSync(dir, { recursive: true });
  requireHaproxy(); // before the pair: failing late would leave nothing to show for the wait
  const pair = await startMariadbPair();
  const started: ClusterProcess[] = [];
  try {
    const adminToken = randomBytes(24).toString('hex');
    const statsPassword = randomBytes(12).toString('hex');
    const [port1, port2, lbPort, statsPort, lbTlsPort] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    // The status feed names the web server HAProxy sends traffic to. Plain HTTP only: with TLS
    // the stats listener takes HTTPS from a CA made after the web servers start.
    const statsPasswordFile = join(dir, 'haproxy_stats_password');
    writeFileSync(statsPasswordFile, `${statsPassword}\n`, { mode: 0o600 });
    const haproxyStats =
      options.tls === true
        ? {}
        : {
            HAPROXY_STATS_URL: `http://127.0.0.1:${statsPort}/`,
            HAPROXY_STATS_PASSWORD_FILE: statsPasswordFile,
          };
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
          ...haproxyStats,
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
    let tls: { env: NodeJS.ProcessEnv; caFile: string } | undefined;
    if (options.tls === true) {
      const ca = await createCertificateAuthority(join(dir, 'tls'), 30);
      const certificate = await issueServerCertificate(
        ca,
        ['localhost', '127.0.0.1'],
        join(ca.dir, 'live/localhost'),
        join(ca.dir, 'haproxy.pem'),
        30,
      );
      const env = { TLS_CERT_FILE: certificate.combinedFile, LB_TLS_PORT: String(lbTlsPort) };
      tls = { env, caFile: ca.rootFile };
    }
    const haproxy = haproxyProcess({
      logFile: join(dir, 'haproxy.log'),
      lbPort,
      statsPort,
      statsPassword,
      appAddrs: [`127.0.0.1:${port1}`, `127.0.0.1:${port2}`],
      env: tls?.env,
    });
    await haproxy.start();
    started.push(haproxy);
    return {
      dir,
      pair,
      webservers,
      haproxy,
      lbUrl: haproxy.url,
      ...(tls && { lbTlsUrl: `https://localhost:${lbTlsPort}`, caFile: tls.caFile }),
      // With TLS the stats listener takes TLS only.
      statsUrl: `${tls ? 'https://localhost' : 'http://127.0.0.1'}:${statsPort}`,
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
 * (default loopback), in master-worker mode (-W) as in production.
 */
export function haproxyProcess(options: {
  logFile: string;
  lbPort: number;
  statsPort: number;
  statsPassword: string;
  appAddrs: [string, string];
  addr?: string;
  env?: NodeJS.ProcessEnv;
}): HaproxyProcess {
  const addr = options.addr ?? '127.0.0.1';
  const envFile = haproxyEnvFile(options.logFile);
  let settings: NodeJS.ProcessEnv = {
    LB_ADDR: addr,
    LB_PORT: String(options.lbPort),
    STATS_ADDR: addr,
    STATS_PORT: String(options.statsPort),
    STATS_PASSWORD: options.statsPassword,
    APP1_ADDR: options.appAddrs[0],
    APP2_ADDR: options.appAddrs[1],
    ...options.env,
  };
  const managed = managedProcess({
    name: 'haproxy',
    url: `http://${addr}:${options.lbPort}`,
    readyPath: '/healthcheck',
    logFile: options.logFile,
    command: requireHaproxy(),
    args: haproxyArgs(envFile),
    env: HAPROXY_PROCESS_ENV,
    beforeStart: () => writeHaproxyEnvFile(envFile, settings),
  });
  return {
    ...managed,
    envFile,
    async reload(changes = {}) {
      const pid = managed.pid();
      if (pid === undefined || !managed.isRunning()) throw new Error('haproxy is not running');
      const previous = settings;
      settings = { ...settings, ...changes };
      writeHaproxyEnvFile(envFile, settings);
      try {
        await reloadHaproxy({ pid, logFile: options.logFile, envFile });
      } catch (error) {
        // A refused reload leaves HAProxy as it was: so are its settings.
        settings = previous;
        writeHaproxyEnvFile(envFile, settings);
        throw error;
      }
    },
  };
}

/** Only PATH: every setting comes from the env file, which a reload reads again. */
export const HAPROXY_PROCESS_ENV: NodeJS.ProcessEnv = { PATH: process.env.PATH };

/** The variables haproxy.cfg reads: one left out of the settings is unset at the next reload. */
function haproxyVariables(): string[] {
  const lines = readFileSync(HAPROXY_CONFIG, 'utf8').split('\n');
  const code = lines.filter((line) => !line.trimStart().startsWith('#')).join('\n');
  return [...new Set([...code.matchAll(/\$\{([A-Z][A-Z0-9_]*)/g)].map((match) => match[1]!))];
}

function haproxyEnvFile(logFile: string): string {
  return `${logFile.replace(/\.log$/, '')}-env.cfg`;
}

export function haproxyArgs(envFile: string): string[] {
  return ['-W', '-db', '-f', envFile, '-f', HAPROXY_CONFIG];
}

/**
 * The settings as a `global` section of `setenv` lines. HAProxy's master re-executes itself with
 * its environment as it was, setenv included, at a reload: so values live in a file it reads
 * again, and a value taken away is `unsetenv`. Empty counts as unset, as in src/config.
 */
export function writeHaproxyEnvFile(file: string, settings: NodeJS.ProcessEnv): void {
  const lines = ['# Written by scripts/local-cluster.ts; read before deploy/haproxy/haproxy.cfg.'];
  lines.push('global');
  const names = new Set([...haproxyVariables(), ...Object.keys(settings)]);
  for (const name of names) {
    const value = settings[name];
    if (value === undefined || value === '') {
      lines.push(`    unsetenv ${name}`);
      continue;
    }
    if (/\p{Cc}/u.test(value)) throw new Error(`${name} holds a control character`);
    lines.push(`    setenv ${name} "${value.replace(/[\\"$]/g, '\\$&')}"`);
  }
  writeFileSync(file, `${lines.join('\n')}\n`, { mode: 0o600 });
}

const RELOAD_TIMEOUT_MS = 30_000;

/**
 * Checks the config HAProxy would load (`haproxy -c`, refusing to reload a broken one), then
 * sends SIGUSR2 to its master: a new worker takes over the listening sockets and the old one
 * finishes its requests. Resolves once the master logs that the new worker loaded.
 */
export async function reloadHaproxy(options: {
  pid: number;
  logFile: string;
  envFile: string;
}): Promise<void> {
  const args = haproxyArgs(options.envFile).filter((arg) => arg !== '-W' && arg !== '-db');
  try {
    await promisify(execFile)(requireHaproxy(), ['-c', ...args], {
      env: HAPROXY_PROCESS_ENV,
    });
  } catch (error) {
    const output = (error as { stderr?: string }).stderr ?? String(error);
    const alerts = output.split('\n').filter((line) => !line.includes('[NOTICE]'));
    throw new Error(`haproxy -c refused the new config, nothing reloaded:\n${alerts.join('\n')}`, {
      cause: error,
    });
  }
  const from = statSync(options.logFile).size;
  process.kill(options.pid, 'SIGUSR2');
  const deadline = Date.now() + RELOAD_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const log = readFileSync(options.logFile).subarray(from).toString('utf8');
    if (/\bLoading success\./.test(log)) return;
    if (/\bLoading failure\b/.test(log)) throw new Error(`haproxy did not reload:\n${log.trim()}`);
    await sleep(100);
  }
  throw new Error(`haproxy did not report its reload within ${RELOAD_TIMEOUT_MS} ms`);
}

interface ProcessSpec {
  name: string;
  url: string;
  readyPath: string;
  logFile: string;
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  beforeStart?: () => void;
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
      spec.beforeStart?.();
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
      // Its whole process group (its own session): HAProxy's workers and old workers too.
      if (isRunning() && child?.pid !== undefined) process.kill(-child.pid, signal);
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

async function up(tls: boolean): Promise<void> {
  if (existsSync(STATE_FILE)) {
    throw new Error(`a cluster is already running (${STATE_FILE}); run: npm run cluster -- down`);
  }
  const missing = [
    ...missingClusterBinaries(),
    ...(tls && findBinary('openssl') === undefined ? ['openssl'] : []),
  ];
  if (missing.length > 0) {
    throw new Error(
      `missing ${missing.join(', ')}: apt-get install -y haproxy mariadb-server mariadb-client openssl`,
    );
  }
  if (!existsSync(join(REPO_ROOT, 'dist/main.js')))
    throw new Error('dist/ is missing: run npm run build');
  const cluster = await startLocalCluster({ dir: CLUSTER_DIR, tls });
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
  const users = (await (await fetch(`${cluster.webservers[0].url}/api`)).json()) as unknown[];
  const lb =
    cluster.lbTlsUrl === undefined
      ? [`  load balancer   ${cluster.lbUrl}/api   ${cluster.lbUrl}/healthcheck`]
      : [
          `  load balancer   ${cluster.lbTlsUrl}/api   (curl --cacert ${cluster.caFile ?? ''})`,
          `                  ${cluster.lbUrl}: /healthcheck, and 308 to HTTPS for GET and HEAD`,
        ];
  console.log(
    [
      `users-api local cluster is up (${users.length} users, imported by webserver1 on start).`,
      '',
      ...lb,
      `  HAProxy stats   ${cluster.statsUrl}/   (user ${cluster.statsUser}, password ${cluster.statsPassword})`,
      `  HAProxy metrics ${cluster.statsUrl}/metrics   (the same user and password)`,
      `  webserver1      ${cluster.webservers[0].url}   (active)`,
      `  webserver2      ${cluster.webservers[1].url}   (backup)`,
      `  MariaDB         primary ${cluster.pair.primary.url.replace(/:[^:@/]*@/, ':***@')}`,
      `                  replica ${cluster.pair.replica.url.replace(/:[^:@/]*@/, ':***@')}`,
      `  admin token     ${cluster.adminToken}`,
      `  logs            ${CLUSTER_DIR}/*.log, MariaDB: ${state.dataDir}/*/error.log`,
      '',
      'Reload HAProxy (its config, the certificate) with: npm run cluster -- reload',
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

/** Checks and reloads the running cluster's HAProxy, as `kill -USR2` would, dropping nothing. */
async function reload(): Promise<void> {
  const state = existsSync(STATE_FILE)
    ? (JSON.parse(readFileSync(STATE_FILE, 'utf8')) as Partial<ClusterState>)
    : undefined;
  const haproxy = state?.processes?.haproxy;
  if (haproxy === undefined) throw new Error('no local cluster is running: npm run cluster');
  if (haproxy.startedAt === undefined || processStartTime(haproxy.pid) !== haproxy.startedAt) {
    throw new Error(
      `haproxy (pid ${haproxy.pid}) is not running: npm run cluster -- down, then up`,
    );
  }
  const logFile = join(CLUSTER_DIR, 'haproxy.log');
  await reloadHaproxy({ pid: haproxy.pid, logFile, envFile: haproxyEnvFile(logFile) });
  console.log(`haproxy reloaded (master pid ${haproxy.pid}); its log: ${logFile}`);
}

/** When the process started, in clock ticks since boot; undefined once it is gone. */
export function processStartTime(pid: number): string | undefined {
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
  const args = process.argv.slice(2);
  const tls = args.includes('--tls');
  const command = args.find((arg) => arg !== '--tls') ?? 'up';
  try {
    if (command === 'up') await up(tls);
    else if (command === 'reload') await reload();
    else if (command === 'down') await down();
    else
      throw new Error(
        `unknown command ${command}: use up (default, --tls for HTTPS), reload or down`,
      );
  } catch (error) {
    console.error(`cluster: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  }
}
