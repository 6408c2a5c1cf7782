import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import type { MariadbPair } from '../../scripts/mariadb-pair.js';
import { LATEST_MIGRATION } from '../../src/db/migrate-to-latest.js';
import { startBuiltServer, type ChildServer } from '../helpers/child-server.js';
import { eventually, mariadbPairSuite } from '../helpers/mariadb.js';
import { REPO_ROOT } from '../helpers/paths.js';

const pairSuite = mariadbPairSuite();

/** `users-api serve` (the built code) on the pair, with the defaults for start-up steps. */
async function serve(
  t: TestContext,
  pair: MariadbPair,
  env: Record<string, string> = {},
): Promise<ChildServer> {
  const dir = await mkdtemp(join(tmpdir(), 'users-api-startup-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return startBuiltServer(t, dir, {
    SERVER_NAME: 'startup-test',
    DATABASE_URL: pair.primary.url,
    DATABASE_REPLICA_URLS: pair.replica.url,
    DATA_FILE: join(REPO_ROOT, 'data/users.csv'),
    REPLICA_PROBE_INTERVAL_MS: '200',
    DB_CONNECT_TIMEOUT_MS: '1000',
    SHUTDOWN_DRAIN_MS: '0',
    ...env,
  });
}

/** Migrates and loads the sample through one instance, then stops it: the schema is current. */
async function loadedPair(t: TestContext, pair: MariadbPair): Promise<void> {
  const first = await serve(t, pair);
  assert.equal(((await (await fetch(`${first.url}/api`)).json()) as unknown[]).length, 1000);
  assert.equal(await first.stop(), 0);
  pair.waitForReplication();
}

async function healthJson(url: string) {
  const response = await fetch(`${url}/healthcheck?format=json`);
  const body = (await response.json()) as {
    status: string;
    checks: Record<string, { status: string; output?: string; observedSource?: string }[]>;
  };
  return { status: response.status, body };
}

const text = async (url: string) => {
  const response = await fetch(url);
  return `${response.status} ${await response.text()}`;
};

describe(
  'starting while database servers are down (real MariaDB pair, built server)',
  { timeout: 600_000 },
  () => {
    pairSuite.register();

    it('an instance started while the primary is down serves reads from the replica and runs its start-up steps once the primary is back', async (t) => {
      const pair = pairSuite.require();
      await loadedPair(t, pair);
      await pair.primary.kill();
      const server = await serve(t, pair);
      await eventually(
        async () => (await text(`${server.url}/healthcheck`)) === '200 all good from startup-test',
        'the instance is ready on the replica alone',
      );
      assert.equal(((await (await fetch(`${server.url}/api`)).json()) as unknown[]).length, 1000);
      const down = await healthJson(server.url);
      assert.equal(down.body.status, 'warn');
      assert.equal(down.body.checks['database:primary']?.[0]?.status, 'warn');
      assert.match(down.body.checks['startup:steps']?.[0]?.output ?? '', /wait for the primary/);
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      assert.match(metrics, /^users_db_primary_reachable 0$/m);
      const write = await fetch(`${server.url}/addtosql?mode=append`, { method: 'POST' });
      assert.equal(write.status, 503, 'writes answer 503 while the primary is down');

      await pair.primary.start();
      await eventually(
        async () => (await healthJson(server.url)).body.checks['startup:steps'] === undefined,
        'the start-up steps ran once the primary answered',
      );
      assert.ok(
        server.lines.some((line) => line.includes('start-up steps done')),
        'the log says the steps ran',
      );
      await eventually(
        async () => (await healthJson(server.url)).body.status === 'pass',
        'the primary and the replica both pass',
      );
    });

    it('with no database reachable it starts, answers /healthcheck 503, and recovers without a restart', async (t) => {
      const pair = pairSuite.require();
      // A fresh database: no schema, no users. Both servers down before the instance starts.
      await Promise.all([pair.primary.kill(), pair.replica.kill()]);
      const server = await serve(t, pair);
      assert.equal(await text(`${server.url}/livez`), '200 ok');
      const health = await fetch(`${server.url}/healthcheck`);
      assert.equal(health.status, 503);
      assert.match(await health.text(), /^database unavailable: .+$/);
      assert.equal((await fetch(`${server.url}/api`)).status, 503);

      await Promise.all([pair.primary.start(), pair.replica.start()]);
      await eventually(
        async () => (await text(`${server.url}/healthcheck`)) === '200 all good from startup-test',
        'the instance is ready once the servers are back',
        30_000,
      );
      // The migrations and the start-up import ran on the primary, after it came back.
      await eventually(
        async () =>
          ((await (await fetch(`${server.url}/api`)).json()) as unknown[]).length === 1000,
        'the bundled users were imported',
        30_000,
      );
    });

    it('a release started during the outage never reads a replica with an older schema', async (t) => {
      const pair = pairSuite.require();
      await loadedPair(t, pair);
      // The replica as an older release left it: without this release's newest migration.
      // Not binlogged: a transaction of the replica's own would break GTID strict replication.
      pair.replica.sql(
        `SET SESSION sql_log_bin = 0; DELETE FROM users.kysely_migration WHERE name = '${LATEST_MIGRATION}'`,
      );
      await pair.primary.kill();
      const server = await serve(t, pair);
      await eventually(
        async () =>
          (
            (await healthJson(server.url)).body.checks['database:replicationLag']?.[0]?.output ?? ''
          ).includes(`schema lacks migration ${LATEST_MIGRATION}`),
        'the replica is out of the rotation for its schema',
      );
      const health = await text(`${server.url}/healthcheck`);
      assert.match(health, /^503 database unavailable: no database this release can read/);
      const api = await fetch(`${server.url}/api`);
      assert.equal(api.status, 503);
      assert.match(
        ((await api.json()) as { detail: string }).detail,
        /the primary is unreachable, and no replica is in the read rotation/,
      );
      // The primary has the schema: once it is back, reads go there.
      await pair.primary.start();
      await eventually(
        async () => (await text(`${server.url}/healthcheck`)) === '200 all good from startup-test',
        'reads go to the primary once it is back',
      );
    });

    it('with migrations left to an operator, writes and the start-up steps wait for users-api migrate', async (t) => {
      const pair = pairSuite.require();
      await loadedPair(t, pair);
      // The schema as the previous release left it after a swap: without the newest migration.
      pair.primary.sql(
        `ALTER TABLE users.users RENAME INDEX users_name_idx TO users_staging_name_0a1b2c3d; DELETE FROM users.kysely_migration WHERE name >= '0004-users-index-names'`,
      );
      pair.waitForReplication();
      const server = await serve(t, pair, { MIGRATE_ON_START: 'false' });
      await eventually(
        async () =>
          (await text(`${server.url}/healthcheck`)).startsWith('503 database unavailable'),
        'reads refuse the older schema',
      );
      const write = await fetch(`${server.url}/addtosql?mode=append`, {
        method: 'POST',
        headers: { 'content-type': 'text/csv' },
        body: 'NAME,STREET,CITY,STATE,USER_DATE\nAda Early,S,C,NY,01/01/01\n',
      });
      assert.equal(write.status, 503);
      assert.match(
        ((await write.json()) as { detail: string }).detail,
        /schema is older than this release: writes wait for its migrations/,
      );
      assert.match(
        (await healthJson(server.url)).body.checks['startup:steps']?.[0]?.output ?? '',
        /wait for the primary/,
      );

      const migrate = await promisify(execFile)(
        process.execPath,
        [join(REPO_ROOT, 'dist/main.js'), 'migrate'],
        { env: { PATH: process.env.PATH, DATABASE_URL: pair.primary.url } },
      );
      assert.match(
        migrate.stdout,
        /applied 0004-users-index-names, 0005-replication-heartbeat, 0006-users-row-version, 0007-idempotency-keys to /,
      );
      await eventually(
        async () => (await healthJson(server.url)).body.checks['startup:steps'] === undefined,
        'the start-up steps ran once the schema was current',
      );
      await eventually(
        async () => (await text(`${server.url}/healthcheck`)) === '200 all good from startup-test',
        'reads go on with the migrated schema',
      );
    });

    it('an application account without the replication-status grant reads the replica on its heartbeat lag', async (t) => {
      const pair = pairSuite.require();
      await loadedPair(t, pair);
      pair.primary.sql(
        "CREATE USER 'nomonitor'@'127.0.0.1' IDENTIFIED BY 'nomonitor-pw'; GRANT ALL PRIVILEGES ON users.* TO 'nomonitor'@'127.0.0.1'",
      );
      t.after(() => pair.primary.sql("DROP USER IF EXISTS 'nomonitor'@'127.0.0.1'"));
      pair.waitForReplication();
      const as = (url: string) => url.replace(/\/\/app:[^@]*@/, '//nomonitor:nomonitor-pw@');
      const server = await serve(t, pair, {
        DATABASE_URL: as(pair.primary.url),
        DATABASE_REPLICA_URLS: as(pair.replica.url),
      });
      // No SLAVE MONITOR: the status probe is refused, and the heartbeat alone measures the lag.
      await eventually(async () => {
        const replica = (await healthJson(server.url)).body.checks['database:replicationLag']?.[0];
        return replica?.status === 'pass' && replica.observedSource === 'heartbeat';
      }, 'the replica is in rotation on its heartbeat lag');
      assert.ok(
        !server.lines.some((line) => /access denied/.test(line)),
        'no access-denied warning for a grant that is not needed',
      );
      assert.equal(await text(`${server.url}/healthcheck`), '200 all good from startup-test');
    });
  },
);
