import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, describe, it, type TestContext } from 'node:test';
import { createConnection } from 'mysql2/promise';
import type { MariadbPair, MariadbServer } from '../../scripts/mariadb-pair.js';
import { runCli } from '../../src/cli/run-cli.js';
import { eventually, startMysqlApp, startPairOrSkip } from '../helpers/mariadb.js';
import { send, type WriteTarget } from '../helpers/single-user-drills.js';

// `users-api db switchover` and `db promote` on a real MariaDB primary + 2 replicas, with the
// admin account the docs list (and nothing more).

const ADMIN_PRIVILEGES = 'READ_ONLY ADMIN, REPLICATION SLAVE ADMIN, RELOAD, SLAVE MONITOR';
const ADMIN_PASSWORD = 'switchover-admin-pass';
const TOKEN = 'switchover-test-token';

const nameOf = (server: MariadbServer) => `127.0.0.1:${server.port}`;

interface CliRun {
  code: number;
  out: string[];
  err: string[];
}

/** A session on `server` as `user` (one the before hook created, with ADMIN_PASSWORD). */
const connectAs = (server: MariadbServer, user: 'switch-admin' | 'switch-locker') =>
  createConnection({ host: '127.0.0.1', port: server.port, user, password: ADMIN_PASSWORD });

/** SHOW SLAVE STATUS through the admin account (the mariadb client's \\G drops the names). */
async function slaveStatus(server: MariadbServer): Promise<Record<string, unknown> | undefined> {
  const connection = await connectAs(server, 'switch-admin');
  try {
    const [rows] = await connection.query('SHOW SLAVE STATUS');
    return (rows as Record<string, unknown>[])[0];
  } finally {
    await connection.end();
  }
}

/** Replication as the server reports it: what "nothing changed" compares. */
async function snapshot(server: MariadbServer): Promise<string> {
  const variables = server.sql('SELECT @@GLOBAL.read_only, @@GLOBAL.gtid_binlog_pos').trim();
  const status = await slaveStatus(server);
  const fields = ['Master_Port', 'Slave_IO_Running', 'Slave_SQL_Running', 'Using_Gtid'];
  return `${variables} ${fields.map((field) => `${field}=${String(status?.[field])}`).join(' ')}`;
}

async function masterPortOf(server: MariadbServer): Promise<number | undefined> {
  const status = await slaveStatus(server);
  return status === undefined ? undefined : Number(status.Master_Port);
}

async function replicating(server: MariadbServer): Promise<boolean> {
  const status = await slaveStatus(server);
  return status?.Slave_IO_Running === 'Yes' && status.Slave_SQL_Running === 'Yes';
}

const readOnly = (server: MariadbServer) => server.sql('SELECT @@GLOBAL.read_only').trim() === '1';

/** Adds one user named `name` through the service's single-user route. */
const addUser = (target: WriteTarget, name: string) =>
  send(target, 'POST', '/api/users', {
    body: { NAME: name, STREET: 'Switch Row', CITY: 'Over', STATE: 'NY', USER_DATE: '01/01/26' },
  });

/** Waits until `replica` has applied everything `primary` has written (bounded). */
function waitFor(primary: MariadbServer, replica: MariadbServer): void {
  const position = primary.sql('SELECT @@GLOBAL.gtid_binlog_pos').trim();
  const result = replica.sql(`SELECT MASTER_GTID_WAIT('${position}', 30)`).trim();
  assert.equal(result, '0', `${replica.name} applied ${position}`);
}

function namesOn(server: MariadbServer, prefix: string): string[] {
  return server
    .sql(`SELECT name FROM users.users WHERE name LIKE '${prefix}%' ORDER BY name`)
    .split('\n')
    .filter((line) => line !== '');
}

interface WriteResult {
  name: string;
  status: number;
  code: unknown;
  /** ms since the load began when the answer came. */
  at: number;
}

/**
 * Writes users through the service from `workers` loops until `stop()` (bounded: at most
 * `maxPerWorker` writes each, and `maxMs` in all).
 */
function startWriteLoad(
  target: WriteTarget,
  prefix: string,
  options = { workers: 4, maxPerWorker: 2000, maxMs: 120_000, pauseMs: 10 },
) {
  const startedAt = Date.now();
  const results: WriteResult[] = [];
  let stopped = false;
  const worker = async (index: number) => {
    for (let i = 0; i < options.maxPerWorker && !stopped; i += 1) {
      if (Date.now() - startedAt > options.maxMs) break;
      const name = `${prefix}${index}-${String(i).padStart(4, '0')}`;
      const answer = await addUser(target, name).catch((error: unknown) => ({
        status: 0,
        body: { code: String(error) },
      }));
      results.push({
        name,
        status: answer.status,
        code: (answer.body as { code?: unknown }).code,
        at: Date.now() - startedAt,
      });
      await new Promise((resolve) => setTimeout(resolve, options.pauseMs));
    }
  };
  const running = Promise.all(Array.from({ length: options.workers }, (_, index) => worker(index)));
  return {
    results,
    startedAt,
    async stop() {
      stopped = true;
      await running;
    },
  };
}

/** The longest stretch without an acknowledged write, from the first one to the last. */
function longestGapMs(results: readonly WriteResult[]): number {
  const acked = results
    .filter((result) => result.status === 201)
    .map((result) => result.at)
    .sort((a, b) => a - b);
  let longest = 0;
  for (let i = 1; i < acked.length; i += 1) longest = Math.max(longest, acked[i]! - acked[i - 1]!);
  return longest;
}

describe(
  'db switchover and db promote on a MariaDB primary + 2 replicas',
  { timeout: 900_000 },
  () => {
    let pair: MariadbPair | undefined;
    let skipReason: string | undefined;
    let dir = '';
    const cluster = () => {
      assert.ok(pair, 'the MariaDB servers did not start');
      return pair;
    };
    const admin = () => ['--admin-url', `mysql://switch-admin:${ADMIN_PASSWORD}@127.0.0.1/`];
    const replicationPasswordFile = () => join(dir, 'replication-password');

    const cli = async (args: string[]): Promise<CliRun> => {
      const { primary, replicas } = cluster();
      const run: CliRun = { code: -1, out: [], err: [] };
      run.code = await runCli(args, {
        env: {
          DATABASE_URL: primary.url,
          DATABASE_REPLICA_URLS: replicas.map((replica) => replica.url).join(','),
          DB_CONNECT_TIMEOUT_MS: '2000',
          LOG_LEVEL: 'silent',
        },
        stdout: (line) => run.out.push(line),
        stderr: (line) => run.err.push(line),
        stopSignal: () => new Promise<string>(() => {}),
      });
      return run;
    };
    const switchoverTo = (server: MariadbServer, ...extra: string[]) =>
      cli([
        'db',
        'switchover',
        '--to',
        nameOf(server),
        ...admin(),
        '--replication-password-file',
        replicationPasswordFile(),
        ...extra,
      ]);

    /** An instance on every server (no /api cache), and how to write through it as admin. */
    const startApp = async (t: TestContext) => {
      const { url, db } = await startMysqlApp(t, cluster(), {
        DATABASE_REPLICA_URLS: cluster()
          .replicas.map((server) => server.url)
          .join(','),
        ADMIN_TOKEN: TOKEN,
        API_CACHE_MAX_BYTES: '0',
      });
      const target: WriteTarget = { url, token: TOKEN };
      return { db, target };
    };

    before(async () => {
      const started = await startPairOrSkip({ replicas: 2 });
      if (typeof started === 'string') {
        skipReason = started;
        return;
      }
      pair = started;
      dir = await mkdtemp(join(tmpdir(), 'users-api-switchover-'));
      await writeFile(replicationPasswordFile(), `${pair.replication.password}\n`, { mode: 0o600 });
      pair.primary.sql(
        `CREATE USER 'switch-admin'@'127.0.0.1' IDENTIFIED BY '${ADMIN_PASSWORD}';` +
          `GRANT ${ADMIN_PRIVILEGES} ON *.* TO 'switch-admin'@'127.0.0.1';` +
          // The rollback test holds a row lock on a replica: read_only refuses that without this.
          `CREATE USER 'switch-locker'@'127.0.0.1' IDENTIFIED BY '${ADMIN_PASSWORD}';` +
          "GRANT READ_ONLY ADMIN ON *.* TO 'switch-locker'@'127.0.0.1';" +
          "GRANT ALL ON users.* TO 'switch-locker'@'127.0.0.1';" +
          'CREATE TABLE users.switchover_probe (id INT PRIMARY KEY, hits INT NOT NULL);' +
          'INSERT INTO users.switchover_probe VALUES (1, 0)',
      );
      pair.waitForReplication();
    });
    after(async () => {
      await pair?.stop();
      if (dir !== '') await rm(dir, { recursive: true, force: true });
    });
    beforeEach((t) => {
      if (skipReason !== undefined) (t as { skip(message: string): void }).skip(skipReason);
    });

    it('bad input and unmet preconditions change nothing, each with its exit code', async () => {
      const { primary, replica, replicas } = cluster();
      const replica2 = replicas[1]!;
      const servers = [primary, ...replicas];
      const before = await Promise.all(servers.map(snapshot));
      const unchanged = async (what: string) =>
        assert.deepEqual(
          await Promise.all(servers.map(snapshot)),
          before,
          `${what}: nothing changed`,
        );

      const unknown = await switchoverTo({ ...replica, port: 1 });
      assert.equal(unknown.code, 2, unknown.err.join('\n'));
      assert.match(unknown.err.join('\n'), /127\.0\.0\.1:1 is not a configured database server/);
      await unchanged('unknown host');

      const toPrimary = await switchoverTo(primary);
      assert.equal(toPrimary.code, 3);
      assert.match(toPrimary.err.join('\n'), /is already the primary/);
      await unchanged('target is the primary');

      const wrongPassword = await cli([
        'db',
        'switchover',
        '--to',
        nameOf(replica),
        '--admin-url',
        'mysql://switch-admin:wrong@127.0.0.1/',
        '--replication-password-file',
        replicationPasswordFile(),
      ]);
      assert.equal(wrongPassword.code, 3);
      assert.match(wrongPassword.err.join('\n'), /access denied for the admin account/);
      assert.doesNotMatch(wrongPassword.err.join('\n'), /wrong|switchover-admin-pass/);
      await unchanged('admin account refused');

      const appAccount = await cli([
        'db',
        'switchover',
        '--to',
        nameOf(replica),
        '--admin-url',
        primary.url,
        '--replication-password-file',
        replicationPasswordFile(),
      ]);
      assert.equal(appAccount.code, 3);
      assert.match(appAccount.err.join('\n'), /the admin account lacks READ_ONLY ADMIN/);
      await unchanged("the application's account as admin");

      for (const args of [
        ['db', 'switchover', '--to', nameOf(replica), '--replication-password-file', 'x'],
        ['db', 'switchover', '--to', nameOf(replica), '--admin-url', 'http://a:b@h/'],
        ['db', 'switchover', '--to', nameOf(replica), ...admin()],
        [
          'db',
          'switchover',
          '--to',
          nameOf(replica),
          ...admin(),
          '--replication-password-file',
          join(dir, 'missing'),
        ],
        [
          'db',
          'switchover',
          '--to',
          nameOf(replica),
          ...admin(),
          '--replication-password-file',
          replicationPasswordFile(),
          '--timeout',
          'soon',
        ],
        ['db', 'switchover', ...admin()],
      ]) {
        const run = await cli(args);
        assert.equal(run.code, 2, `${args.join(' ')}: ${run.err.join('\n')}`);
        assert.ok(run.err.length > 0, `${args.join(' ')} says why`);
      }
      await unchanged('usage errors');

      // A server that replicates from nothing, then one that replicates from another replica.
      replica2.sql('STOP SLAVE; RESET SLAVE ALL');
      const notReplica = await switchoverTo(replica2);
      assert.equal(notReplica.code, 3);
      assert.match(notReplica.err.join('\n'), /is not a replica/);
      replica2.sql(
        `CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${replica.port}, MASTER_USER='repl', ` +
          `MASTER_PASSWORD='${cluster().replication.password}', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1; START SLAVE`,
      );
      const chained = await switchoverTo(replica2);
      assert.equal(chained.code, 3);
      assert.match(
        chained.err.join('\n'),
        /replicates from 127\.0\.0\.1:\d+, not from the primary/,
      );
      replica2.sql(`STOP SLAVE; CHANGE MASTER TO MASTER_PORT=${primary.port}; START SLAVE`);
      await eventually(() => replicating(replica2), 'replica2 replicates from the primary again');
      await unchanged('target not a replica of the primary');

      const promoteLive = await cli(['db', 'promote', nameOf(replica), ...admin(), '--yes']);
      assert.equal(promoteLive.code, 3);
      assert.match(promoteLive.err.join('\n'), /the primary is up\. Use db switchover/);
      await unchanged('promote while the primary is up');
    });

    it('a target that cannot catch up in time: rolled back, the old primary takes writes', async () => {
      const { primary, replica, replicas } = cluster();
      const replica2 = replicas[1]!;
      // A locking read on the target holds the row its replication must update next: the target
      // stays "healthy" but cannot apply the primary's last write.
      const locker = await connectAs(replica, 'switch-locker');
      try {
        await locker.query('BEGIN');
        await locker.query('SELECT * FROM users.switchover_probe WHERE id = 1 FOR UPDATE');
        primary.sql('UPDATE users.switchover_probe SET hits = hits + 1 WHERE id = 1');

        const run = await switchoverTo(replica, '--timeout', '2s', '--max-lag', '5m');
        assert.equal(run.code, 4, run.err.join('\n'));
        assert.match(run.err.join('\n'), /switchover rolled back: .* did not apply .* within 2s/);
        assert.ok(run.out.some((line) => /rolling back/.test(line)));
        assert.equal(readOnly(primary), false, 'the old primary is writable again');
        assert.equal(readOnly(replica), true, 'the target is still read-only');
        assert.equal(
          await masterPortOf(replica),
          primary.port,
          'the target still replicates from it',
        );
        assert.ok(await replicating(replica));
        // The other replica applied the update, and nothing else about it changed.
        assert.equal(readOnly(replica2), true);
        assert.equal(await masterPortOf(replica2), primary.port, 'replica2 untouched');
        assert.ok(await replicating(replica2));
      } finally {
        await locker.query('ROLLBACK');
        await locker.end();
      }
      waitFor(primary, replica);
      assert.equal(replica.sql('SELECT hits FROM users.switchover_probe').trim(), '1');
    });

    it('switchover under write load: no acknowledged write lost or doubled, the app follows', async (t) => {
      const { primary, replica, replicas } = cluster();
      const replica2 = replicas[1]!;
      const { db, target } = await startApp(t);
      await eventually(
        () => db.replicaStates().every((state) => state.healthy),
        'both replicas in rotation',
      );

      const load = startWriteLoad(target, 'Switch ');
      await eventually(
        () => load.results.filter((result) => result.status === 201).length >= 20,
        'the load is flowing',
        30_000,
      );
      const cliStartedAt = Date.now() - load.startedAt;
      const run = await switchoverTo(replica, '--timeout', '20s');
      const cliEndedAt = Date.now() - load.startedAt;
      assert.equal(run.code, 0, [...run.out, ...run.err].join('\n'));
      // Writes resume on the new primary once the app's probe finds it; then some more.
      await eventually(
        () =>
          load.results.filter((result) => result.at > cliEndedAt && result.status === 201).length >=
          20,
        'writes are acknowledged after the switchover',
        60_000,
      );
      await load.stop();

      const statuses = new Set(
        load.results.map(
          (result) => `${result.status} ${typeof result.code === 'string' ? result.code : ''}`,
        ),
      );
      for (const result of load.results) {
        assert.ok(
          [201, 409, 503].includes(result.status),
          `write ${result.name} answered ${result.status} ${String(result.code)}`,
        );
      }
      const acked = load.results
        .filter((result) => result.status === 201)
        .map((result) => result.name);
      for (const server of [replica, primary, replica2]) {
        if (server !== replica) waitFor(replica, server);
        const names = namesOn(server, 'Switch ');
        assert.equal(new Set(names).size, names.length, `${server.name}: no write twice`);
        const present = new Set(names);
        const missing = acked.filter((name) => !present.has(name));
        assert.deepEqual(missing, [], `${server.name} holds every acknowledged write`);
      }

      // The app writes to the new primary without a restart; the old primary and replica2 follow.
      await eventually(
        () => db.primaryState().writer === nameOf(replica),
        'the app writes to the new primary',
      );
      assert.equal(readOnly(replica), false);
      assert.equal(readOnly(primary), true);
      assert.equal(await masterPortOf(primary), replica.port);
      assert.equal(await masterPortOf(replica2), replica.port);
      assert.equal(
        await masterPortOf(replica),
        undefined,
        'the new primary replicates from nothing',
      );
      const after = await addUser(target, 'After Switch');
      assert.equal(after.status, 201, JSON.stringify(after.body));
      waitFor(replica, replica2);
      waitFor(replica, primary);
      assert.deepEqual(namesOn(replica2, 'After Switch'), ['After Switch']);
      assert.deepEqual(namesOn(primary, 'After Switch'), ['After Switch']);
      await eventually(
        () => db.replicaStates().every((state) => state.healthy),
        'the old primary and replica2 serve reads',
      );

      const paused = /writes paused (\d+) ms/.exec(run.out.join('\n'));
      const took = /in (\d+) ms; writes paused/.exec(run.out.join('\n'));
      const refused = load.results.filter((result) => result.status !== 201);
      const refusedSpan =
        refused.length === 0
          ? 0
          : Math.max(...refused.map((r) => r.at)) - Math.min(...refused.map((r) => r.at));
      /* eslint-disable no-console -- the measured figures docs/operations.md quotes */
      console.log(
        `# switchover: command ${took?.[1]} ms (wall ${cliEndedAt - cliStartedAt} ms), writes paused ${paused?.[1]} ms (read_only=1 to read_only=0)`,
      );
      console.log(
        `# switchover: ${load.results.length} writes, ${acked.length} acknowledged, ${refused.length} refused over ${refusedSpan} ms; longest gap between acknowledged writes ${longestGapMs(load.results)} ms; answers ${[...statuses].join(', ')}`,
      );
      /* eslint-enable no-console */
    });

    it('promote after the primary is killed: without --yes nothing changes, with it the app follows', async (t) => {
      const { primary, replica, replicas } = cluster();
      const replica2 = replicas[1]!;
      // After the switchover above, `replica` is the primary; `primary` and replica2 replicate.
      assert.equal(readOnly(replica), false);
      const { db, target } = await startApp(t);
      await eventually(
        () => db.primaryState().writer === nameOf(replica),
        'the app writes to replica',
      );
      for (let i = 0; i < 5; i += 1) {
        const answer = await addUser(target, `Before Kill ${i}`);
        assert.equal(answer.status, 201, JSON.stringify(answer.body));
      }
      waitFor(replica, primary);
      waitFor(replica, replica2);
      await replica.kill();

      const survivors = [primary, replica2];
      const before = await Promise.all(survivors.map(snapshot));
      const asked = await cli(['db', 'promote', nameOf(primary), ...admin()]);
      assert.equal(asked.code, 2, asked.err.join('\n'));
      assert.match(
        asked.out.join('\n'),
        /data-loss window \(asynchronous replication\): .* received up to 0-\d+-\d+/,
      );
      assert.match(asked.out.join('\n'), /cannot be known while it is down/);
      assert.match(asked.err.join('\n'), /nothing changed; run again with --yes/);
      assert.deepEqual(
        await Promise.all(survivors.map(snapshot)),
        before,
        'promote without --yes changed nothing',
      );

      const promoted = await cli(['db', 'promote', nameOf(primary), ...admin(), '--yes']);
      assert.equal(promoted.code, 0, [...promoted.out, ...promoted.err].join('\n'));
      assert.equal(readOnly(primary), false);
      assert.equal(await masterPortOf(primary), undefined);
      assert.equal(await masterPortOf(replica2), primary.port);
      assert.ok(await replicating(replica2), 'replica2 replicates from the promoted server');
      assert.ok(promoted.out.some((line) => line.includes(`${nameOf(replica)} did not answer`)));

      await eventually(
        // The configured primary (DATABASE_URL) is named `primary` as the writer.
        () => db.primaryState().writer === 'primary',
        'the app follows the promotion',
        30_000,
      );
      const afterPromote = await addUser(target, 'After Promote');
      assert.equal(afterPromote.status, 201, JSON.stringify(afterPromote.body));
      waitFor(primary, replica2);
      for (const server of survivors) {
        assert.equal(namesOn(server, 'Before Kill ').length, 5, `${server.name} kept every write`);
        assert.deepEqual(namesOn(server, 'After Promote'), ['After Promote']);
      }
    });
  },
);
