import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it, type TestContext } from 'node:test';
import { createConnection, type RowDataPacket } from 'mysql2/promise';
import type { MariadbPair } from '../../scripts/mariadb-pair.js';
import type { Kysely } from 'kysely';
import { loadConfig, type MysqlConnection } from '../../src/config/config.js';
import { IGNORE_DATABASE_EVENTS } from '../../src/db/database-observer.js';
import {
  HEARTBEAT_LOCK,
  startHeartbeatWriter,
  type HeartbeatWriter,
} from '../../src/db/dialects/mysql/heartbeat-writer.js';
import { createPooledExecutor } from '../../src/db/dialects/mysql/pooled-executor.js';
import { up as createHeartbeatTable } from '../../src/db/migrations/0005-replication-heartbeat.js';
import { eventually, mariadbPairSuite, startMysqlApp } from '../helpers/mariadb.js';

const pairSuite = mariadbPairSuite();

// An application account with rights on the app's database only: no SLAVE MONITOR, no
// REPLICATION CLIENT, no BINLOG MONITOR. Created on the primary; replication copies it.
const PLAIN_PASSWORD = randomBytes(12).toString('hex');

function plainUrl(server: MariadbPair['primary']): string {
  return `mysql://plain:${PLAIN_PASSWORD}@127.0.0.1:${server.port}/users`;
}

function createPlainAccount(pair: MariadbPair): void {
  pair.primary.sql(
    `CREATE USER IF NOT EXISTS 'plain'@'127.0.0.1' IDENTIFIED BY '${PLAIN_PASSWORD}'; ` +
      `GRANT ALL PRIVILEGES ON users.* TO 'plain'@'127.0.0.1'`,
  );
  pair.waitForReplication();
}

/** The app on the pair through the plain account, lag limit 1 s, cache off. */
async function startPlainApp(t: TestContext, pair: MariadbPair) {
  createPlainAccount(pair);
  return startMysqlApp(t, pair, {
    DATABASE_URL: plainUrl(pair.primary),
    DATABASE_REPLICA_URLS: plainUrl(pair.replica),
    MAX_REPLICA_LAG_SECONDS: '1',
    API_CACHE_MAX_BYTES: '0',
  });
}

interface HealthView {
  checks: Record<
    string,
    { status: string; observedValue?: number; observedSource?: string; output?: string }[]
  >;
}

async function replicaHealth(url: string) {
  const response = await fetch(`${url}/healthcheck?format=json`);
  return ((await response.json()) as HealthView).checks['database:replicationLag']?.[0];
}

/** The status of a GET, its body read to the end (an unread body would hold the server's close). */
async function statusOf(url: string): Promise<number> {
  const response = await fetch(url);
  await response.arrayBuffer();
  return response.status;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe(
  'replica lag from the replication heartbeat (real MariaDB pair)',
  { timeout: 120_000 },
  () => {
    pairSuite.register();

    it('exactly one instance writes the heartbeat; another takes over when it stops or freezes', async (t) => {
      const pair = pairSuite.require();
      const { database: connection } = loadConfig({
        DATABASE_URL: pair.primary.url,
        DB_CONNECT_TIMEOUT_MS: '1000',
      }) as { database: MysqlConnection };
      const startWriter = (name: string) => {
        const { executor } = createPooledExecutor(
          connection.primary,
          connection,
          1,
          name,
          IGNORE_DATABASE_EVENTS,
        );
        const writer = startHeartbeatWriter({
          executor: () => executor,
          intervalMs: 200,
          writer: name,
          takeOverAfterMs: 1500,
        });
        t.after(async () => {
          await writer.stop();
          await executor.destroy();
        });
        return { executor, writer };
      };
      const first = startWriter('first');
      // The table, as migration 0005 makes it (no app here: its own writer would compete).
      await createHeartbeatTable(first.executor as unknown as Kysely<unknown>);
      const second = startWriter('second');
      const writers = new Map<string, HeartbeatWriter>([
        ['first', first.writer],
        ['second', second.writer],
      ]);
      const admin = await createConnection({ uri: pair.primary.url });
      t.after(() => admin.end());
      const writerRow = async () => {
        const [[row]] = await admin.query<RowDataPacket[]>(
          'SELECT writer FROM users.replication_heartbeat WHERE id = 1',
        );
        return (row as { writer: string } | undefined)?.writer;
      };
      const holders = () => [...writers].filter(([, writer]) => writer.writing()).map(([n]) => n);
      await eventually(() => holders().length === 1, 'one writer holds the lock');
      for (let round = 0; round < 10; round += 1) {
        assert.deepEqual(holders().length, 1, `writers at once: ${holders().join(', ')}`);
        await sleep(100);
      }
      const [holding] = holders() as [string];
      const other = holding === 'first' ? 'second' : 'first';
      assert.equal(await writerRow(), holding);
      await writers.get(holding)!.stop();
      await eventually(
        async () => writers.get(other)!.writing() && (await writerRow()) === other,
        'the other instance takes over the heartbeat',
      );

      // A frozen writer: its session holds the lock, its TCP connection stays open, it writes
      // nothing. The live writer stops, the "frozen" session takes the lock, a new writer comes.
      await writers.get(other)!.stop();
      const frozen = await createConnection({ uri: pair.primary.url });
      t.after(() => frozen.end().catch(() => undefined));
      const [[taken]] = await frozen.query<RowDataPacket[]>(
        `SELECT GET_LOCK('${HEARTBEAT_LOCK}', 5) AS taken`,
      );
      assert.equal(Number(taken?.taken), 1);
      const third = startWriter('third');
      await eventually(
        async () => third.writer.writing() && (await writerRow()) === 'third',
        'the live instance ends the frozen session and writes the heartbeat',
      );
      await assert.rejects(frozen.query('SELECT 1'), 'the frozen session was ended');
    });
    it('an account without replication privileges reads the replica; an idle primary shows no lag', async (t) => {
      const pair = pairSuite.require();
      const { url, db } = await startPlainApp(t, pair);
      // The account really lacks the grant: the status probe would be refused.
      const plain = await createConnection({ uri: plainUrl(pair.replica) });
      await assert.rejects(plain.query('SHOW REPLICA STATUS'), {
        code: 'ER_SPECIFIC_ACCESS_DENIED_ERROR',
      });
      plain.destroy();
      await eventually(
        () => db.replicaStates()[0]?.lagSource === 'heartbeat' && db.replicaStates()[0]!.healthy,
        'the replica is in rotation on its heartbeat lag',
      );
      // Idle: nothing but the heartbeat is written. Over three seconds the figure stays at most
      // one beat (1 s, the heartbeat's granularity) while Seconds_Behind_Master would say 0 or
      // nothing at all.
      for (let round = 0; round < 6; round += 1) {
        await sleep(500);
        const [state] = db.replicaStates();
        assert.equal(state?.healthy, true, state?.reason);
        assert.ok((state?.lagSeconds ?? 99) <= 1, `lag ${state?.lagSeconds}`);
      }
      const health = await replicaHealth(url);
      assert.equal(health?.status, 'pass');
      assert.equal(health?.observedSource, 'heartbeat');
      const metrics = await (await fetch(`${url}/metrics`)).text();
      const replica = `127.0.0.1:${pair.replica.port}`;
      assert.match(
        metrics,
        new RegExp(
          `^users_db_replica_lag_source\\{replica="${replica}",source="heartbeat"\\} 1$`,
          'm',
        ),
      );
      assert.match(
        metrics,
        new RegExp(
          `^users_db_replica_lag_source\\{replica="${replica}",source="replica_status"\\} 0$`,
          'm',
        ),
      );
      assert.equal(await statusOf(`${url}/api`), 200);
    });

    it('a stopped SQL thread makes the heartbeat lag grow until the replica leaves rotation', async (t) => {
      const pair = pairSuite.require();
      const { url, db } = await startPlainApp(t, pair);
      const load = await fetch(`${url}/addtosql`, { method: 'POST' });
      await load.arrayBuffer();
      assert.equal(load.status, 200);
      await eventually(() => db.replicaStates()[0]?.healthy === true, 'the replica is healthy');
      // Without the grant nothing tells the app that apply stopped, but the heartbeat does.
      pair.replica.sql('STOP SLAVE SQL_THREAD');
      await eventually(
        () => db.replicaStates()[0]?.healthy === false,
        'the replica leaves rotation on its growing lag',
      );
      assert.match(db.replicaStates()[0]?.reason ?? '', /^lag \d+s over 1s$/);
      assert.equal(db.replicaStates()[0]?.lagSource, 'heartbeat');
      // A write the replica cannot see: reads must come from the primary now.
      pair.primary.sql(
        "INSERT INTO users.users (name, street, city, state, user_date) VALUES ('Only On Primary', 'S', 'C', 'NY', '01/01/01')",
      );
      const names = ((await (await fetch(`${url}/api`)).json()) as { NAME: string }[]).map(
        (user) => user.NAME,
      );
      assert.equal(names.at(-1), 'Only On Primary');
      pair.replica.sql('START SLAVE SQL_THREAD');
      await eventually(
        () => db.replicaStates()[0]?.healthy === true,
        'the replica rejoins once it has caught up',
      );
    });

    it('with the primary gone, no heartbeat is written: the replica stays on its last figure', async (t) => {
      const pair = pairSuite.require();
      const { url, db } = await startPlainApp(t, pair);
      await eventually(
        () => db.replicaStates()[0]?.lagSource === 'heartbeat' && db.replicaStates()[0]!.healthy,
        'the replica is in rotation on its heartbeat lag',
      );
      await pair.primary.kill();
      await eventually(
        () => db.primaryState().healthy === false,
        'the probe sees the primary down',
      );
      // Well past any lag limit: unknown lag must not grow, nor push reads onto a dead primary.
      await sleep(3000);
      const [state] = db.replicaStates();
      assert.equal(state?.healthy, true, state?.reason);
      assert.equal(state?.lagSource, 'last-heartbeat');
      assert.ok((state?.lagSeconds ?? 99) <= 1);
      assert.equal((await replicaHealth(url))?.observedSource, 'last-heartbeat');
      assert.equal(await statusOf(`${url}/api`), 200);
    });
  },
);
