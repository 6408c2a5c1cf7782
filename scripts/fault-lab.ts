/**
 * The fault lab: HAProxy, webserver1, webserver2, a MariaDB primary and two replicas, each on a
 * host of its own (a network namespace with one veth link to a bridge in a "switch" namespace,
 * an address in a private /24 picked per lab), running the real binaries through `ip netns
 * exec`. Faults are injected into one host and healed: kill, freeze, partition, one-way
 * partition, packet loss, a slow link, replica lag and a full disk. See docs/fault-lab.md.
 *
 *   npm run lab -- up                      build the lab (state in .lab/state.json), print it
 *   npm run lab -- fault NAME TARGET [...]  inject a fault (names: see FAULTS)
 *   npm run lab -- heal                    heal every fault in force
 *   npm run lab -- status                  hosts, processes and faults
 *   npm run lab -- down                    remove everything the lab made
 *
 * Tests call startLab() and lab.down() themselves; the state file lets `down` clean up a lab a
 * crashed process left behind.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chownSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statfsSync,
  writeFileSync,
} from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import {
  findBinary,
  HAPROXY_PROCESS_ENV,
  haproxyArgs,
  processStartTime,
  writeHaproxyEnvFile,
} from './local-cluster.js';
import { SERVE_NODE_FLAGS } from './serve-node-flags.js';

const REPO_ROOT = fileURLToPath(new URL('../', import.meta.url));
const READY_TIMEOUT_MS = 60_000;
/** Each database host's datadir is a tmpfs this large, so that `diskfull` can fill it. */
const DISK_BYTES = 256 * 1024 * 1024;
const NAMESPACE_PREFIX = 'ualab-';
const LB_PORT = 80;
const STATS_PORT = 8404;
const APP_PORT = 8080;
const MARIADB_PORT = 3306;
/** Each database host's delaying proxy (scripts/delay-proxy.ts): the apps connect here. */
const PROXY_PORT = 3307;

export const LAB_HOSTS = [
  'haproxy',
  'webserver1',
  'webserver2',
  'primary',
  'replica1',
  'replica2',
] as const;
export type LabHost = (typeof LAB_HOSTS)[number];
export type DatabaseHost = 'primary' | 'replica1' | 'replica2';
export const DATABASE_HOSTS: readonly DatabaseHost[] = ['primary', 'replica1', 'replica2'];
/** The last octet of each host's address; the test runner's side of the lab is .1. */
const HOST_OCTET: Record<LabHost, number> = {
  haproxy: 10,
  webserver1: 11,
  webserver2: 12,
  primary: 21,
  replica1: 22,
  replica2: 23,
};

export const FAULTS = {
  kill: 'SIGKILL the host main process (heal: start it again on the same data)',
  freeze: 'SIGSTOP the host processes: connections stay open, nothing answers (heal: SIGCONT)',
  partition: 'drop every packet in and out of the host (no RST, no ICMP)',
  oneway: 'drop packets going INTO the host (`out`: leaving it); the other way still flows',
  loss: 'drop PERCENT % of packets both ways at random (nftables numgen), default 1',
  slow: 'database host: DELAY ± JITTER ms on its link (default 100 ± 20) and LOSS % (default 1); RATE kbit/s with tc tbf when given',
  lag: 'replica: stop its replication SQL thread (heal: start it)',
  diskfull:
    "database host: fill its datadir's tmpfs (heal: free it, and start the server again if it died)",
} as const;
export type FaultName = keyof typeof FAULTS;

export interface LabProcess {
  host: LabHost;
  pid: number;
  /** /proc/PID/stat field 22: a pid reused by another process is not ours. */
  startedAt: string | undefined;
  command: string;
  args: string[];
  env: Record<string, string>;
  logFile: string;
}

export interface ActiveFault {
  name: FaultName;
  target: LabHost;
  args: string[];
  since: string;
  /** A database server's role when the fault began: one restarted by the heal gets it back. */
  writable?: boolean;
}

export interface LabState {
  id: string;
  /** The process that made the lab and removes it (tests); undefined: `npm run lab`, by hand. */
  ownerPid: number | undefined;
  /** The PID namespace `ownerPid` is a number in (`/proc/self/ns/pid`'s link). */
  ownerPidNamespace?: string | undefined;
  dir: string;
  /** The lab's /24, as its first three octets (`10.123.45`). */
  subnet: string;
  switchNamespace: string;
  namespaces: Partial<Record<LabHost, string>>;
  /** The runner's veth into the switch (in this namespace): removed by `down`. */
  clientLink: string | undefined;
  mounts: string[];
  processes: Record<string, LabProcess>;
  faults: ActiveFault[];
  adminToken: string;
  appPassword: string;
  /** `users-admin`, with the privileges `db switchover` needs (docs/operations.md). */
  dbAdminPassword: string;
  /** `repl`, the account replicas connect with. */
  replPassword: string;
  statsPassword: string;
  /** The webservers' extra environment (timeouts under test). */
  env: Record<string, string>;
}

export interface Lab {
  state: LabState;
  /** HAProxy's public URL, reachable from this namespace. */
  lbUrl: string;
  statsUrl: string;
  address(host: LabHost): string;
  /** A web server's own URL (bypassing HAProxy). */
  webUrl(host: 'webserver1' | 'webserver2'): string;
  /** SQL as root through the server's socket (works whatever the network does). */
  sql(host: DatabaseHost, statement: string, timeoutMs?: number): string;
  fault(name: FaultName, target: LabHost, args?: string[]): Promise<void>;
  /** Heals every fault in force, newest first. */
  heal(): Promise<void>;
  status(): string;
  down(): Promise<void>;
}

/** What the lab needs that this machine lacks (empty when all is there). */
export function missingLabRequirements(): string[] {
  const missing = ['ip', 'nft', 'tc', 'mariadbd', 'mariadb-install-db', 'mariadb', 'haproxy']
    .filter((name) => findBinary(name) === undefined)
    .map((name) => `${name} (apt-get install -y ${debianPackageOf(name)})`);
  if (process.getuid?.() !== 0) missing.push('root (network namespaces need CAP_NET_ADMIN)');
  if (!existsSync(join(REPO_ROOT, 'dist/main.js'))) missing.push('dist/main.js (npm run build)');
  return missing;
}

function debianPackageOf(binary: string): string {
  if (binary === 'ip' || binary === 'tc') return 'iproute2';
  if (binary === 'nft') return 'nftables';
  if (binary === 'mariadb') return 'mariadb-client';
  if (binary === 'haproxy') return 'haproxy';
  return 'mariadb-server';
}

/** Runs a command to completion; throws with its stderr when it fails. */
function run(command: string, args: string[], input?: string): string {
  const result = spawnSync(command, args, { encoding: 'utf8', input, timeout: 60_000 });
  if (result.status !== 0) {
    throw new Error(
      `${command} ${args.join(' ')}: ${(result.stderr || result.error?.message || '').trim()}`,
    );
  }
  return result.stdout;
}

const ip = (...args: string[]) => run('ip', args);
const inNamespace = (namespace: string, command: string, args: string[], input?: string) =>
  run('ip', ['netns', 'exec', namespace, command, ...args], input);

/** A 10.x.y.0/24 that no interface of this namespace uses (another lab holds one each). */
function pickSubnet(): string {
  const used = ip('-4', '-o', 'addr', 'show');
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const subnet = `10.${200 + Math.floor(Math.random() * 50)}.${Math.floor(Math.random() * 256)}`;
    if (!used.includes(`inet ${subnet}.`)) return subnet;
  }
  throw new Error('no free 10.200-249.x.0/24 for the lab');
}

/**
 * Builds the lab and starts every process; on any failure removes what it made and throws.
 * `dir` holds logs, configs and the state file (default: a new temp folder).
 */
export async function startLab(
  options: { dir?: string; env?: Record<string, string> } = {},
): Promise<Lab> {
  const missing = missingLabRequirements();
  if (missing.length > 0) throw new Error(`the fault lab needs ${missing.join(', ')}`);
  await removeStaleLabs();
  const id = randomBytes(3).toString('hex');
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), `${TEMP_PREFIX}${id}-`));
  mkdirSync(dir, { recursive: true });
  const state: LabState = {
    id,
    ownerPid: options.dir === undefined ? process.pid : undefined,
    ownerPidNamespace: pidNamespace(),
    dir,
    subnet: pickSubnet(),
    switchNamespace: `${NAMESPACE_PREFIX}${id}-switch`,
    namespaces: {},
    clientLink: undefined,
    mounts: [],
    processes: {},
    faults: [],
    adminToken: randomBytes(24).toString('hex'),
    appPassword: randomBytes(12).toString('hex'),
    dbAdminPassword: randomBytes(12).toString('hex'),
    replPassword: randomBytes(12).toString('hex'),
    statsPassword: randomBytes(12).toString('hex'),
    env: options.env ?? {},
  };
  const lab = labFromState(state);
  try {
    buildNetwork(state);
    await startDatabases(state);
    await startWebservers(state);
    await startHaproxy(state);
    saveState(state);
    return lab;
  } catch (error) {
    await lab.down().catch((cleanup: unknown) => {
      // The first failure is the one to report; the cleanup's goes with it on stderr.
      process.stderr.write(`lab cleanup after a failed start also failed: ${String(cleanup)}\n`);
    });
    throw error;
  }
}

export const TEMP_PREFIX = 'users-api-lab-';

/** This process's PID namespace; undefined where /proc does not say. */
function pidNamespace(): string | undefined {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return undefined;
  }
}

/**
 * Labs in temp folders whose owner is gone (a test run killed before its cleanup): removed, so
 * their namespaces, mounts and processes do not pile up.
 */
export async function removeStaleLabs(): Promise<void> {
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(TEMP_PREFIX)) continue;
    const state = readLabState(join(tmpdir(), name));
    if (state?.ownerPid === undefined || isAlive(state.ownerPid)) continue;
    // A pid from another PID namespace (a run in another container or sandbox sharing this
    // temp folder) says nothing here: that lab was torn down while its tests ran.
    const namespace = pidNamespace();
    if (state.ownerPidNamespace !== undefined && state.ownerPidNamespace !== namespace) continue;
    await tearDown(state);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function stateFile(state: { dir: string }): string {
  return join(state.dir, 'state.json');
}

function saveState(state: LabState): void {
  writeFileSync(stateFile(state), JSON.stringify(state, null, 2), { mode: 0o600 });
}

export function readLabState(dir: string): LabState | undefined {
  const file = stateFile({ dir });
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as LabState) : undefined;
}

function addressOf(state: LabState, host: LabHost): string {
  return `${state.subnet}.${HOST_OCTET[host]}`;
}

function buildNetwork(state: LabState): void {
  const { id, switchNamespace } = state;
  ip('netns', 'add', switchNamespace);
  saveState(state);
  inNamespace(switchNamespace, 'ip', ['link', 'add', 'br0', 'type', 'bridge']);
  inNamespace(switchNamespace, 'ip', ['link', 'set', 'br0', 'up']);
  inNamespace(switchNamespace, 'ip', ['link', 'set', 'lo', 'up']);
  // The runner's port on the switch: how tests and people reach HAProxy and the hosts.
  const client = `ual${id}c`;
  ip('link', 'add', client, 'type', 'veth', 'peer', 'name', `ual${id}s`);
  state.clientLink = client;
  saveState(state);
  ip('link', 'set', `ual${id}s`, 'netns', switchNamespace);
  inNamespace(switchNamespace, 'ip', ['link', 'set', `ual${id}s`, 'name', 'runner']);
  inNamespace(switchNamespace, 'ip', ['link', 'set', 'runner', 'master', 'br0', 'up']);
  ip('addr', 'add', `${state.subnet}.1/24`, 'dev', client);
  ip('link', 'set', client, 'up');
  LAB_HOSTS.forEach((host, index) => {
    const namespace = `${NAMESPACE_PREFIX}${id}-${host}`;
    ip('netns', 'add', namespace);
    state.namespaces[host] = namespace;
    saveState(state);
    // Interface names hold at most 15 characters: temporary ones, renamed once moved.
    const [inside, outside] = [`ual${id}${index}h`, `ual${id}${index}s`];
    ip('link', 'add', inside, 'type', 'veth', 'peer', 'name', outside);
    ip('link', 'set', inside, 'netns', namespace);
    ip('link', 'set', outside, 'netns', switchNamespace);
    inNamespace(namespace, 'ip', ['link', 'set', inside, 'name', 'eth0']);
    inNamespace(namespace, 'ip', ['addr', 'add', `${addressOf(state, host)}/24`, 'dev', 'eth0']);
    inNamespace(namespace, 'ip', ['link', 'set', 'eth0', 'up']);
    inNamespace(namespace, 'ip', ['link', 'set', 'lo', 'up']);
    inNamespace(switchNamespace, 'ip', ['link', 'set', outside, 'name', host]);
    inNamespace(switchNamespace, 'ip', ['link', 'set', host, 'master', 'br0', 'up']);
  });
}

function namespaceOf(state: LabState, host: LabHost): string {
  const namespace = state.namespaces[host];
  if (namespace === undefined) throw new Error(`the lab has no ${host} host`);
  return namespace;
}

/** Starts `spec` in its host's namespace, detached, and records it in the state. */
function launch(state: LabState, name: string, spec: Omit<LabProcess, 'pid' | 'startedAt'>) {
  const log = openSync(spec.logFile, 'a');
  const child = spawn(
    'ip',
    ['netns', 'exec', namespaceOf(state, spec.host), spec.command, ...spec.args],
    // Its own process group: a freeze or kill reaches its workers too, a Ctrl-C does not.
    { env: spec.env, detached: true, stdio: ['ignore', log, log] },
  );
  closeSync(log);
  // Not holding the event loop: `npm run lab -- up` returns and leaves the lab running.
  child.unref();
  if (child.pid === undefined) throw new Error(`${name} did not start`);
  // `ip netns exec` execs the command: the pid is the server's own.
  state.processes[name] = { ...spec, pid: child.pid, startedAt: processStartTime(child.pid) };
  saveState(state);
}

function isOurs(record: LabProcess | undefined): record is LabProcess {
  if (record === undefined) return false;
  try {
    const stat = readFileSync(`/proc/${record.pid}/stat`, 'utf8');
    const processState = stat.slice(stat.lastIndexOf(') ') + 2)[0];
    return (
      processState !== 'Z' &&
      processState !== 'X' &&
      processStartTime(record.pid) === record.startedAt
    );
  } catch {
    return false;
  }
}

/** Whether the lab process named `name` (a host, or `proxy-HOST`) is alive: not stopped, not a zombie. */
export function isLabProcessRunning(state: LabState, name: string): boolean {
  return isOurs(state.processes[name]);
}

function signalGroup(record: LabProcess, signal: NodeJS.Signals): void {
  if (isOurs(record)) process.kill(-record.pid, signal);
}

async function stopProcess(record: LabProcess | undefined): Promise<void> {
  if (!isOurs(record)) return;
  // A frozen process takes SIGKILL too; SIGCONT first lets its group's others see it.
  process.kill(-record.pid, 'SIGCONT');
  process.kill(-record.pid, 'SIGKILL');
  const deadline = Date.now() + 15_000;
  while (isOurs(record) && Date.now() < deadline) await sleep(50);
}

async function waitUntil(what: string, ready: () => Promise<boolean> | boolean, logFile?: string) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (await Promise.resolve(ready()).catch(() => false)) return;
    await sleep(100);
  }
  const tail =
    logFile !== undefined && existsSync(logFile)
      ? readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n')
      : '';
  throw new Error(`${what} was not ready within ${READY_TIMEOUT_MS} ms\n${tail}`);
}

async function httpOk(url: string): Promise<boolean> {
  const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
  await response.arrayBuffer();
  return response.ok;
}

function tcpOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: 1000 });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

function databaseDir(state: LabState, host: DatabaseHost) {
  const root = join(state.dir, host);
  const disk = join(root, 'disk');
  return {
    root,
    disk,
    data: join(disk, 'data'),
    filler: join(disk, 'filler'),
    cnf: join(root, 'my.cnf'),
    socket: join(root, 'mysqld.sock'),
    proxySettings: join(root, 'delay.json'),
  };
}

function rootSql(state: LabState, host: DatabaseHost, statement: string, timeoutMs = 60_000) {
  const result = spawnSync(
    'mariadb',
    [
      `--socket=${databaseDir(state, host).socket}`,
      '-uroot',
      '--batch',
      '--skip-column-names',
      '-e',
      statement,
    ],
    { encoding: 'utf8', timeout: timeoutMs },
  );
  if (result.status !== 0)
    throw new Error(`${host}: ${(result.stderr || result.error?.message || '').trim()}`);
  return result.stdout;
}

function mysqlIds(): { uid: number; gid: number } {
  return {
    uid: Number(run('id', ['-u', 'mysql']).trim()),
    gid: Number(run('id', ['-g', 'mysql']).trim()),
  };
}

async function startDatabases(state: LabState): Promise<void> {
  const { uid, gid } = mysqlIds();
  for (const [index, host] of DATABASE_HOSTS.entries()) {
    const paths = databaseDir(state, host);
    mkdirSync(paths.disk, { recursive: true });
    run('mount', ['-t', 'tmpfs', '-o', `size=${DISK_BYTES},mode=0755`, `lab-${host}`, paths.disk]);
    state.mounts.push(paths.disk);
    saveState(state);
    mkdirSync(paths.data);
    for (const path of [state.dir, paths.root, paths.disk, paths.data]) chownSync(path, uid, gid);
    writeFileSync(
      paths.cnf,
      [
        '[mariadbd]',
        'user=mysql',
        `datadir=${paths.data}`,
        `socket=${paths.socket}`,
        `pid-file=${join(paths.root, 'mysqld.pid')}`,
        `log-error=${join(paths.root, 'error.log')}`,
        `port=${MARIADB_PORT}`,
        'bind-address=0.0.0.0',
        'skip-name-resolve',
        `server-id=${index + 1}`,
        'log-bin=binlog',
        'log-slave-updates=1',
        'binlog-format=ROW',
        'gtid-strict-mode=1',
        'character-set-server=utf8mb4',
        'collation-server=utf8mb4_bin',
        // Every server, the primary too: one that restarts must not make a second writable
        // server after a switchover (docs/operations.md); startDatabases makes the primary
        // writable and a heal gives a restarted server back the role it had.
        'read-only=1',
        'relay-log=relay',
        // Small, to fit the tmpfs and fill it quickly; not production settings.
        'innodb-buffer-pool-size=64M',
        'innodb-log-file-size=16M',
        'innodb-flush-log-at-trx-commit=2',
        'sync-binlog=0',
        'performance-schema=OFF',
        '',
      ].join('\n'),
    );
    run('mariadb-install-db', [
      `--defaults-file=${paths.cnf}`,
      '--auth-root-authentication-method=socket',
      '--skip-test-db',
    ]);
    await startDatabase(state, host);
    launch(state, `proxy-${host}`, {
      host,
      command: process.execPath,
      args: [
        '--import',
        'tsx',
        join(REPO_ROOT, 'scripts/delay-proxy.ts'),
        `0.0.0.0:${PROXY_PORT}`,
        `127.0.0.1:${MARIADB_PORT}`,
        paths.proxySettings,
      ],
      env: { PATH: process.env.PATH ?? '' },
      logFile: join(paths.root, 'proxy.log'),
    });
  }
  const { replPassword } = state;
  rootSql(
    state,
    'primary',
    [
      'SET GLOBAL read_only=0',
      'CREATE DATABASE users CHARACTER SET utf8mb4 COLLATE utf8mb4_bin',
      // The apps come through each host's delay proxy, so from 127.0.0.1 or the lab's /24.
      `CREATE USER 'app'@'%' IDENTIFIED BY '${state.appPassword}'`,
      `GRANT ALL PRIVILEGES ON users.* TO 'app'@'%'`,
      `GRANT REPLICATION CLIENT, BINLOG MONITOR, SLAVE MONITOR ON *.* TO 'app'@'%'`,
      `CREATE USER 'repl'@'${state.subnet}.%' IDENTIFIED BY '${replPassword}'`,
      `GRANT REPLICATION SLAVE ON *.* TO 'repl'@'${state.subnet}.%'`,
      `CREATE USER 'users-admin'@'${state.subnet}.%' IDENTIFIED BY '${state.dbAdminPassword}'`,
      `GRANT READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, RELOAD, SLAVE MONITOR ON *.* TO 'users-admin'@'${state.subnet}.%'`,
    ].join(';'),
  );
  for (const replica of ['replica1', 'replica2'] as const) {
    rootSql(
      state,
      replica,
      `CHANGE MASTER TO MASTER_HOST='${addressOf(state, 'primary')}', MASTER_PORT=${MARIADB_PORT}, ` +
        `MASTER_USER='repl', MASTER_PASSWORD='${replPassword}', MASTER_USE_GTID=slave_pos, ` +
        `MASTER_CONNECT_RETRY=1; START SLAVE`,
    );
  }
  waitForReplication(state);
  for (const host of DATABASE_HOSTS) {
    await waitUntil(`${host}'s proxy`, () => tcpOpen(addressOf(state, host), PROXY_PORT));
  }
}

async function startDatabase(state: LabState, host: DatabaseHost): Promise<void> {
  const paths = databaseDir(state, host);
  const logFile = join(paths.root, 'stdout.log');
  launch(state, host, {
    host,
    command: findBinary('mariadbd') ?? 'mariadbd',
    args: [`--defaults-file=${paths.cnf}`],
    env: { PATH: process.env.PATH ?? '' },
    logFile,
  });
  await waitUntil(
    host,
    () => isOurs(state.processes[host]) && existsSync(paths.socket) && pingDatabase(state, host),
    join(paths.root, 'error.log'),
  );
}

/**
 * Whether the server is the writable one; undefined when it cannot say (frozen, say, by another
 * fault in force): a heal then leaves it read-only, as its cnf starts it, to be set by hand.
 */
function isWritable(state: LabState, host: DatabaseHost): boolean | undefined {
  try {
    return rootSql(state, host, 'SELECT @@read_only', 5000).trim() === '0';
  } catch {
    return undefined;
  }
}

/** Starts a database again; one that was the primary is made writable again (its cnf says not). */
async function restartDatabase(state: LabState, host: DatabaseHost, writable: boolean | undefined) {
  await startDatabase(state, host);
  if (writable === true) rootSql(state, host, 'SET GLOBAL read_only=0');
}

function pingDatabase(state: LabState, host: DatabaseHost): boolean {
  try {
    rootSql(state, host, 'SELECT 1', 2000);
    return true;
  } catch {
    return false;
  }
}

/**
 * The one writable database server: the host named `primary` until a switchover moves the role.
 * Throws when none or several are writable.
 */
export function currentPrimary(state: LabState): DatabaseHost {
  const writable = DATABASE_HOSTS.filter(
    (host) => rootSql(state, host, 'SELECT @@read_only', 5000).trim() === '0',
  );
  if (writable.length !== 1)
    throw new Error(`${writable.length} writable database servers: ${writable.join(', ')}`);
  return writable[0]!;
}

/** Waits until the other two database servers have applied everything the primary has written. */
export function waitForReplication(state: LabState, timeoutSeconds = 30): void {
  const primary = currentPrimary(state);
  const position = rootSql(state, primary, 'SELECT @@gtid_binlog_pos').trim();
  for (const replica of DATABASE_HOSTS.filter((host) => host !== primary)) {
    const result = rootSql(
      state,
      replica,
      `SELECT MASTER_GTID_WAIT('${position}', ${timeoutSeconds})`,
    ).trim();
    if (result !== '0') throw new Error(`${replica} did not reach ${position}`);
  }
}

function webserverSpec(state: LabState, host: 'webserver1' | 'webserver2') {
  const url = (db: DatabaseHost) =>
    `mysql://app:${state.appPassword}@${addressOf(state, db)}:${PROXY_PORT}/users`;
  return {
    host,
    command: process.execPath,
    args: [...SERVE_NODE_FLAGS, join(REPO_ROOT, 'dist/main.js'), 'serve'],
    env: {
      PATH: process.env.PATH ?? '',
      HOST: '0.0.0.0',
      PORT: String(APP_PORT),
      SERVER_NAME: host,
      DATABASE_URL: url('primary'),
      DATABASE_REPLICA_URLS: `${url('replica1')},${url('replica2')}`,
      DATA_FILE: join(REPO_ROOT, 'data/users.csv'),
      ADMIN_TOKEN: state.adminToken,
      ...state.env,
    },
    logFile: join(state.dir, `${host}.log`),
  };
}

async function startWebserver(state: LabState, host: 'webserver1' | 'webserver2') {
  const spec = webserverSpec(state, host);
  launch(state, host, spec);
  await waitUntil(
    host,
    () => httpOk(`http://${addressOf(state, host)}:${APP_PORT}/healthcheck`),
    spec.logFile,
  );
}

async function startWebservers(state: LabState): Promise<void> {
  // One after the other: the first migrates and imports the sample data on its start.
  await startWebserver(state, 'webserver1');
  await startWebserver(state, 'webserver2');
}

async function startHaproxy(state: LabState): Promise<void> {
  const logFile = join(state.dir, 'haproxy.log');
  const envFile = join(state.dir, 'haproxy-env.cfg');
  writeHaproxyEnvFile(envFile, {
    LB_ADDR: '0.0.0.0',
    LB_PORT: String(LB_PORT),
    STATS_ADDR: '0.0.0.0',
    STATS_PORT: String(STATS_PORT),
    STATS_PASSWORD: state.statsPassword,
    APP1_ADDR: `${addressOf(state, 'webserver1')}:${APP_PORT}`,
    APP2_ADDR: `${addressOf(state, 'webserver2')}:${APP_PORT}`,
  });
  const haproxy = findBinary('haproxy');
  if (haproxy === undefined) throw new Error('haproxy not found: apt-get install -y haproxy');
  launch(state, 'haproxy', {
    host: 'haproxy',
    command: haproxy,
    args: haproxyArgs(envFile),
    env: HAPROXY_PROCESS_ENV as Record<string, string>,
    logFile,
  });
  await waitUntil(
    'haproxy',
    () => httpOk(`http://${addressOf(state, 'haproxy')}:${LB_PORT}/healthcheck`),
    logFile,
  );
}

/** Applies (or, with `remove`, deletes) the lab's nftables rules in a host's namespace. */
function setFirewall(state: LabState, host: LabHost, rules: { in: string[]; out: string[] }) {
  const namespace = namespaceOf(state, host);
  const existing = spawnSync('ip', [
    'netns',
    'exec',
    namespace,
    'nft',
    'list',
    'table',
    'inet',
    'lab',
  ]);
  if (existing.status === 0) inNamespace(namespace, 'nft', ['delete', 'table', 'inet', 'lab']);
  if (rules.in.length === 0 && rules.out.length === 0) return;
  const chain = (name: string, hook: string, list: string[]) =>
    `  chain ${name} { type filter hook ${hook} priority 0; policy accept;\n${list
      .map((rule) => `    ${rule}\n`)
      .join('')}  }\n`;
  inNamespace(
    namespace,
    'nft',
    ['-f', '-'],
    `table inet lab {\n${chain('in', 'input', rules.in)}${chain('out', 'output', rules.out)}}\n`,
  );
}

function isDatabaseHost(target: LabHost): target is DatabaseHost {
  return (DATABASE_HOSTS as readonly string[]).includes(target);
}

function requireDatabaseHost(target: LabHost, fault: FaultName): DatabaseHost {
  if (!isDatabaseHost(target))
    throw new Error(`${fault} applies to a database host (${DATABASE_HOSTS.join(', ')})`);
  return target;
}

function numberArg(text: string | undefined, fallback: number, what: string): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isFinite(value) || value < 0)
    throw new Error(`${what}: expected a number, got ${text}`);
  return value;
}

/** The process named `name` (a host's server is named after the host; `proxy-HOST`). */
function mainProcess(state: LabState, name: string): LabProcess {
  const record = state.processes[name];
  if (record === undefined) throw new Error(`no process ${name} in the lab`);
  return record;
}

/** Every process of a host: a frozen host is frozen whole (a database and its link proxy). */
function hostProcesses(state: LabState, host: LabHost): LabProcess[] {
  return Object.values(state.processes).filter((record) => record.host === host);
}

async function injectFault(state: LabState, name: FaultName, target: LabHost, args: string[]) {
  if (!(name in FAULTS))
    throw new Error(`unknown fault ${name}: ${Object.keys(FAULTS).join(', ')}`);
  if (!LAB_HOSTS.includes(target))
    throw new Error(`unknown host ${target}: ${LAB_HOSTS.join(', ')}`);
  if (state.faults.some((fault) => fault.target === target && fault.name === name))
    throw new Error(`${name} is already in force on ${target}`);
  const writable =
    (name === 'kill' || name === 'diskfull') && isDatabaseHost(target)
      ? isWritable(state, target)
      : undefined;
  switch (name) {
    case 'kill':
      await stopProcess(mainProcess(state, target));
      break;
    case 'freeze':
      for (const record of hostProcesses(state, target)) signalGroup(record, 'SIGSTOP');
      break;
    case 'partition':
      setFirewall(state, target, { in: ['iifname "eth0" drop'], out: ['oifname "eth0" drop'] });
      break;
    case 'oneway': {
      const direction = args[0] ?? 'in';
      if (direction !== 'in' && direction !== 'out') throw new Error('oneway takes in or out');
      const drop = { in: [] as string[], out: [] as string[] };
      if (direction === 'in') drop.in.push('iifname "eth0" drop');
      else drop.out.push('oifname "eth0" drop');
      setFirewall(state, target, drop);
      break;
    }
    case 'loss': {
      const percent = numberArg(args[0], 1, 'loss percent');
      const rule = (side: string) => `${side} "eth0" numgen random mod 100 < ${percent} drop`;
      setFirewall(state, target, { in: [rule('iifname')], out: [rule('oifname')] });
      break;
    }
    case 'slow': {
      const host = requireDatabaseHost(target, name);
      const delayMs = numberArg(args[0], 100, 'delay ms');
      const jitterMs = numberArg(args[1], 20, 'jitter ms');
      const percent = numberArg(args[2], 1, 'loss percent');
      const rateKbit = args[3] === undefined ? undefined : numberArg(args[3], 0, 'rate kbit/s');
      if (jitterMs > delayMs) throw new Error('jitter cannot exceed the delay');
      writeFileSync(databaseDir(state, host).proxySettings, JSON.stringify({ delayMs, jitterMs }));
      signalGroup(mainProcess(state, `proxy-${host}`), 'SIGHUP');
      if (percent > 0) {
        const rule = (side: string) => `${side} "eth0" numgen random mod 100 < ${percent} drop`;
        setFirewall(state, target, { in: [rule('iifname')], out: [rule('oifname')] });
      }
      if (rateKbit !== undefined) {
        inNamespace(namespaceOf(state, target), 'tc', [
          ...['qdisc', 'replace', 'dev', 'eth0', 'root', 'tbf'],
          ...['rate', `${rateKbit}kbit`, 'burst', '16kb', 'latency', '400ms'],
        ]);
      }
      break;
    }
    case 'lag': {
      // Whichever host replicates now. MariaDB accepts STOP SLAVE on a server that replicates
      // from nothing, and it would stop nothing.
      const host = requireDatabaseHost(target, name);
      if (rootSql(state, host, 'SHOW SLAVE STATUS').trim() === '')
        throw new Error(`lag applies to a replica: ${host} replicates from nothing`);
      rootSql(state, host, 'STOP SLAVE SQL_THREAD');
      break;
    }
    case 'diskfull': {
      const paths = databaseDir(state, requireDatabaseHost(target, name));
      const { bavail, bsize } = statfsSync(paths.disk);
      run('fallocate', ['-l', String(bavail * bsize), paths.filler]);
      break;
    }
  }
  state.faults.push({
    name,
    target,
    args,
    since: new Date().toISOString(),
    ...(writable === undefined ? {} : { writable }),
  });
  saveState(state);
}

async function healFault(state: LabState, fault: ActiveFault): Promise<void> {
  const { target } = fault;
  switch (fault.name) {
    case 'kill':
      if (target === 'haproxy') await startHaproxy(state);
      else if (target === 'webserver1' || target === 'webserver2')
        await startWebserver(state, target);
      else await restartDatabase(state, target, fault.writable);
      break;
    case 'freeze':
      for (const record of hostProcesses(state, target)) signalGroup(record, 'SIGCONT');
      break;
    case 'partition':
    case 'oneway':
    case 'loss':
      setFirewall(state, target, { in: [], out: [] });
      break;
    case 'slow': {
      const host = requireDatabaseHost(target, fault.name);
      writeFileSync(
        databaseDir(state, host).proxySettings,
        JSON.stringify({ delayMs: 0, jitterMs: 0 }),
      );
      signalGroup(mainProcess(state, `proxy-${host}`), 'SIGHUP');
      setFirewall(state, target, { in: [], out: [] });
      // Deleting a root qdisc that was never added fails: nothing to undo then.
      spawnSync('ip', [
        'netns',
        'exec',
        namespaceOf(state, target),
        'tc',
        'qdisc',
        'del',
        'dev',
        'eth0',
        'root',
      ]);
      break;
    }
    case 'lag':
      rootSql(state, target as DatabaseHost, 'START SLAVE SQL_THREAD');
      break;
    case 'diskfull': {
      const host = requireDatabaseHost(target, fault.name);
      rmSync(databaseDir(state, host).filler, { force: true });
      // MariaDB 10.11 may abort when InnoDB cannot write (docs/fault-lab.md): start it again on
      // its data, as systemd's Restart=on-failure would.
      if (!isOurs(state.processes[host])) await restartDatabase(state, host, fault.writable);
      break;
    }
  }
  state.faults = state.faults.filter((active) => active !== fault);
  saveState(state);
}

/** Removes everything the lab made: processes by pid, mounts, namespaces (with their rules). */
async function tearDown(state: LabState): Promise<void> {
  const problems: string[] = [];
  await Promise.all(Object.values(state.processes).map((record) => stopProcess(record)));
  for (const mount of state.mounts) {
    const result = spawnSync('umount', [mount], { encoding: 'utf8' });
    if (result.status !== 0 && !/not mounted/.test(result.stderr)) problems.push(result.stderr);
  }
  // Deleting a namespace deletes its interfaces, its veth peers and its nftables rules.
  for (const namespace of [...Object.values(state.namespaces), state.switchNamespace]) {
    const result = spawnSync('ip', ['netns', 'del', namespace], { encoding: 'utf8' });
    if (result.status !== 0 && !/No such file/.test(result.stderr)) problems.push(result.stderr);
  }
  if (state.clientLink !== undefined) {
    // Gone with its peer's namespace already, normally.
    spawnSync('ip', ['link', 'del', state.clientLink]);
  }
  if (problems.length > 0) throw new Error(`lab teardown: ${problems.join('; ')}`);
  rmSync(state.dir, { recursive: true, force: true });
}

export function labFromState(state: LabState): Lab {
  const address = (host: LabHost) => addressOf(state, host);
  return {
    state,
    lbUrl: `http://${address('haproxy')}:${LB_PORT}`,
    statsUrl: `http://${address('haproxy')}:${STATS_PORT}`,
    address,
    webUrl: (host) => `http://${address(host)}:${APP_PORT}`,
    sql: (host, statement, timeoutMs) => rootSql(state, host, statement, timeoutMs),
    fault: (name, target, args = []) => injectFault(state, name, target, args),
    async heal() {
      for (const fault of [...state.faults].reverse()) await healFault(state, fault);
    },
    status: () => describeLab(state),
    down: () => tearDown(state),
  };
}

function describeLab(state: LabState): string {
  const lines = [`lab ${state.id}: ${state.subnet}.0/24, files in ${state.dir}`];
  for (const host of LAB_HOSTS) {
    const processes = Object.entries(state.processes)
      .filter(([, record]) => record.host === host)
      .map(([name, record]) => {
        const running = isOurs(record)
          ? processState(record.pid) === 'T'
            ? 'frozen'
            : 'running'
          : 'stopped';
        return `${name} pid ${record.pid} ${running}`;
      });
    const faults = state.faults.filter((fault) => fault.target === host);
    lines.push(
      `  ${host.padEnd(10)} ${address(state, host).padEnd(14)} ${processes.join(', ')}${faults
        .map((fault) => `  FAULT ${fault.name} ${fault.args.join(' ')}`.trimEnd())
        .join('')}`,
    );
  }
  return lines.join('\n');
}

function address(state: LabState, host: LabHost): string {
  return addressOf(state, host);
}

function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(') ') + 2)[0];
  } catch {
    return undefined;
  }
}

// ---- npm run lab -- up|down|fault NAME TARGET|heal|status ---------------------------------

const CLI_DIR = join(REPO_ROOT, '.lab');

function requireRunningLab(): Lab {
  const state = readLabState(CLI_DIR);
  if (state === undefined) throw new Error('no lab is running: npm run lab -- up');
  return labFromState(state);
}

async function cli(args: string[]): Promise<void> {
  const [command = 'status', ...rest] = args;
  if (command === 'up') {
    if (readLabState(CLI_DIR) !== undefined)
      throw new Error(`a lab is already up (${stateFile({ dir: CLI_DIR })}): npm run lab -- down`);
    const lab = await startLab({ dir: CLI_DIR });
    console.log(
      [
        lab.status(),
        '',
        `  load balancer  ${lab.lbUrl}/api   (from this host)`,
        `  HAProxy stats  ${lab.statsUrl}/   (user admin, password ${lab.state.statsPassword})`,
        `  admin token    ${lab.state.adminToken}`,
        '',
        `Faults: npm run lab -- fault NAME TARGET [ARGS]; heal: npm run lab -- heal; stop: npm run lab -- down`,
      ].join('\n'),
    );
  } else if (command === 'down') {
    const state = readLabState(CLI_DIR);
    if (state === undefined) {
      console.log('no lab is running');
      return;
    }
    await labFromState(state).down();
    console.log(`lab ${state.id} removed`);
  } else if (command === 'fault') {
    const [name, target, ...faultArgs] = rest;
    if (name === undefined || target === undefined) {
      throw new Error(
        `usage: npm run lab -- fault NAME TARGET [ARGS]\n${Object.entries(FAULTS)
          .map(([fault, what]) => `  ${fault.padEnd(9)} ${what}`)
          .join('\n')}\nhosts: ${LAB_HOSTS.join(', ')}`,
      );
    }
    const lab = requireRunningLab();
    await lab.fault(name as FaultName, target as LabHost, faultArgs);
    console.log(`${name} on ${target}: in force (npm run lab -- heal)`);
  } else if (command === 'heal') {
    const lab = requireRunningLab();
    const count = lab.state.faults.length;
    await lab.heal();
    console.log(`healed ${count} fault(s)`);
  } else if (command === 'status') {
    console.log(requireRunningLab().status());
  } else {
    throw new Error(`unknown command ${command}: up, down, fault NAME TARGET, heal or status`);
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    await cli(process.argv.slice(2));
  } catch (error) {
    console.error(`lab: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = /usage|unknown/.test(String(error)) ? 2 : 1;
  }
}
