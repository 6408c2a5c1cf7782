/**
 * Starts a real MariaDB primary and a GTID replica (or more: `{ replicas: 2 }`) on free loopback
 * ports, each in its own temp folder, for tests, benchmarks and the local cluster. It stops
 * exactly the processes it started.
 *
 * Usage as a script (prints the URLs, runs until Ctrl-C):  tsx scripts/mariadb-pair.ts [replicas]
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import {
  chownSync,
  existsSync,
  mkdirSync,
  openSync,
  closeSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const READY_TIMEOUT_MS = 60_000;

export const MARIADB_BINARIES = ['mariadbd', 'mariadb-install-db', 'mariadb'] as const;

/** The binaries this starter needs that are not on PATH (empty when all are there). */
export function missingMariadbBinaries(): string[] {
  return MARIADB_BINARIES.filter(
    (name) => spawnSync('sh', ['-c', `command -v ${name}`]).status !== 0,
  );
}

export interface MariadbServer {
  /** `primary`, `replica`, then `replica2`, `replica3`… */
  name: string;
  port: number;
  dir: string;
  /** mysql://app:…@127.0.0.1:port/users — the application's account. */
  url: string;
  /** Runs SQL as root through the server's socket; returns tab-separated output. */
  sql(statement: string): string;
  /** SIGKILL, and wait until the process is gone (reaped, not a zombie). */
  kill(): Promise<void>;
  /** Start again on the same data folder and port; resolves when it accepts connections. */
  start(): Promise<void>;
  isRunning(): boolean;
  pid(): number | undefined;
}

export interface MariadbPair {
  primary: MariadbServer;
  /** The first replica (`replicas[0]`). */
  replica: MariadbServer;
  /** Every replica, in start order. */
  replicas: MariadbServer[];
  /** The account the replicas connect to their primary with (REPLICATION SLAVE). */
  replication: { user: string; password: string };
  /** Waits until every replica has applied everything the primary has written. */
  waitForReplication(timeoutSeconds?: number): void;
  stop(): Promise<void>;
}

interface Instance {
  cnf: string;
  socket: string;
  child: ChildProcess | undefined;
}

/** Picks a free loopback port by binding port 0 and releasing it. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (typeof address !== 'object' || address === null) throw new Error('no port');
  return address.port;
}

export async function startMariadbPair(options: { replicas?: number } = {}): Promise<MariadbPair> {
  const replicaCount = options.replicas ?? 1;
  if (!Number.isInteger(replicaCount) || replicaCount < 1 || replicaCount > 8)
    throw new Error(`replicas: 1 to 8, not ${replicaCount}`);
  const missing = missingMariadbBinaries();
  if (missing.length > 0)
    throw new Error(
      `missing ${missing.join(', ')}: apt-get install -y mariadb-server mariadb-client`,
    );
  const base = await mkdtemp(join(tmpdir(), 'users-api-mariadb-'));
  const appPassword = randomBytes(12).toString('hex');
  const replPassword = randomBytes(12).toString('hex');
  const servers: MariadbServer[] = [];
  try {
    const primary = await createServerInstance(base, 'primary', 1, appPassword);
    servers.push(primary);
    const replicas: MariadbServer[] = [];
    for (let index = 0; index < replicaCount; index += 1) {
      const name = index === 0 ? 'replica' : `replica${index + 1}`;
      const replica = await createServerInstance(base, name, index + 2, appPassword);
      servers.push(replica);
      replicas.push(replica);
    }
    const replica = replicas[0]!;

    // Users and the database are created on the primary only: replication copies them.
    primary.sql(
      [
        'CREATE DATABASE users CHARACTER SET utf8mb4 COLLATE utf8mb4_bin',
        `CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY '${appPassword}'`,
        `GRANT ALL PRIVILEGES ON users.* TO 'app'@'127.0.0.1'`,
        // Replica status and GTID waits for the app's health probes.
        `GRANT REPLICATION CLIENT, BINLOG MONITOR, SLAVE MONITOR ON *.* TO 'app'@'127.0.0.1'`,
        `CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY '${replPassword}'`,
        `GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'`,
      ].join(';'),
    );
    for (const each of replicas) {
      each.sql(
        `CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${primary.port}, ` +
          `MASTER_USER='repl', MASTER_PASSWORD='${replPassword}', MASTER_USE_GTID=slave_pos, ` +
          `MASTER_CONNECT_RETRY=1; START SLAVE`,
      );
    }
    const pair: MariadbPair = {
      primary,
      replica,
      replicas,
      replication: { user: 'repl', password: replPassword },
      waitForReplication(timeoutSeconds = 30) {
        const position = primary.sql('SELECT @@gtid_binlog_pos').trim();
        for (const each of replicas) {
          const result = each
            .sql(`SELECT MASTER_GTID_WAIT('${position}', ${timeoutSeconds})`)
            .trim();
          if (result !== '0')
            throw new Error(`${each.name} did not reach ${position} in ${timeoutSeconds}s`);
        }
      },
      async stop() {
        await Promise.all(servers.map((server) => stopServer(server)));
        await rm(base, { recursive: true, force: true });
      },
    };
    pair.waitForReplication();
    return pair;
  } catch (error) {
    await Promise.all(servers.map((server) => stopServer(server)));
    await rm(base, { recursive: true, force: true });
    throw error;
  }
}

async function stopServer(server: MariadbServer): Promise<void> {
  if (server.isRunning()) await server.kill();
}

async function createServerInstance(
  base: string,
  name: string,
  serverId: number,
  appPassword: string,
): Promise<MariadbServer> {
  const dir = join(base, name);
  const datadir = join(dir, 'data');
  mkdirSync(datadir, { recursive: true });
  const port = await freePort();
  const instance: Instance = {
    cnf: join(dir, 'my.cnf'),
    socket: join(dir, 'mysqld.sock'),
    child: undefined,
  };
  writeFileSync(
    instance.cnf,
    [
      '[mariadbd]',
      'user=mysql',
      `datadir=${datadir}`,
      `socket=${instance.socket}`,
      `pid-file=${join(dir, 'mysqld.pid')}`,
      `log-error=${join(dir, 'error.log')}`,
      `port=${port}`,
      'bind-address=127.0.0.1',
      'skip-name-resolve',
      `server-id=${serverId}`,
      'log-bin=binlog',
      'log-slave-updates=1',
      'binlog-format=ROW',
      'gtid-strict-mode=1',
      'character-set-server=utf8mb4',
      'collation-server=utf8mb4_bin',
      ...(name === 'primary' ? [] : ['read-only=1', 'relay-log=relay']),
      // Small and fast for tests; not durability settings for production.
      'innodb-buffer-pool-size=128M',
      'innodb-flush-log-at-trx-commit=2',
      'sync-binlog=0',
      'performance-schema=OFF',
      '',
    ].join('\n'),
  );
  // mariadbd refuses to run as root; everything it touches belongs to mysql.
  for (const path of [base, dir, datadir]) chownSync(path, uid('mysql'), gid('mysql'));
  const install = spawnSync(
    'mariadb-install-db',
    [
      `--defaults-file=${instance.cnf}`,
      '--auth-root-authentication-method=socket',
      '--skip-test-db',
    ],
    { encoding: 'utf8' },
  );
  if (install.status !== 0) throw new Error(`mariadb-install-db failed: ${install.stderr}`);

  const server: MariadbServer = {
    name,
    port,
    dir,
    url: `mysql://app:${appPassword}@127.0.0.1:${port}/users`,
    sql(statement) {
      const result = spawnSync(
        'mariadb',
        [
          `--socket=${instance.socket}`,
          '-uroot',
          '--batch',
          '--skip-column-names',
          '-e',
          statement,
        ],
        { encoding: 'utf8', timeout: 60_000 },
      );
      if (result.status !== 0)
        throw new Error(`${name}: ${result.stderr.trim() || result.error?.message}`);
      return result.stdout;
    },
    async kill() {
      const child = instance.child;
      if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.ref(); // keep the event loop alive until the exit is seen
      child.kill('SIGKILL');
      await exited;
    },
    async start() {
      const log = openSync(join(dir, 'stdout.log'), 'a');
      // Own session, so a Ctrl-C meant for the test runner reaches it only through stop().
      instance.child = spawn('mariadbd', [`--defaults-file=${instance.cnf}`], {
        detached: true,
        stdio: ['ignore', log, log],
      });
      closeSync(log);
      // Not holding the event loop: `npm run cluster` returns and leaves the server running.
      instance.child.unref();
      await waitUntilReady(server, instance);
    },
    pid: () => instance.child?.pid,
    isRunning() {
      const child = instance.child;
      return child !== undefined && child.exitCode === null && child.signalCode === null;
    },
  };
  await server.start();
  return server;
}

async function waitUntilReady(server: MariadbServer, instance: Instance): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (!server.isRunning()) break;
    if (existsSync(instance.socket)) {
      const ping = spawnSync(
        'mariadb',
        [`--socket=${instance.socket}`, '-uroot', '-e', 'SELECT 1'],
        {
          encoding: 'utf8',
        },
      );
      if (ping.status === 0) return;
    }
    await sleep(100);
  }
  const errorLog = join(server.dir, 'error.log');
  const tail = existsSync(errorLog)
    ? readFileSync(errorLog, 'utf8').split('\n').slice(-15).join('\n')
    : '';
  await server.kill();
  throw new Error(`mariadb ${server.name} did not become ready:\n${tail}`);
}

function uid(user: string): number {
  return Number(spawnSync('id', ['-u', user], { encoding: 'utf8' }).stdout.trim());
}
function gid(user: string): number {
  return Number(spawnSync('id', ['-g', user], { encoding: 'utf8' }).stdout.trim());
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const pair = await startMariadbPair({ replicas: Number(process.argv[2] ?? 1) });
  console.log(
    JSON.stringify(
      { primary: pair.primary.url, replicas: pair.replicas.map((each) => each.url) },
      null,
      2,
    ),
  );
  console.log('Ctrl-C stops every server.');
  const stop = () => void pair.stop().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}
