import assert from 'node:assert/strict';
import { after, before, beforeEach, type TestContext } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/config.js';
import type { RawEnv } from '../../src/config/env.js';
import type { Database } from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrate-to-latest.js';
import { openDatabase } from '../../src/db/open-database.js';
import { countUsers } from '../../src/db/users-repository.js';
import { createMetrics } from '../../src/metrics/create-metrics.js';
import {
  missingMariadbBinaries,
  startMariadbPair,
  type MariadbPair,
} from '../../scripts/mariadb-pair.js';
import { REPO_ROOT } from './paths.js';
import { testAppDependencies } from './test-app.js';

/**
 * Starts the real MariaDB pair for a test file, or explains why it cannot: locally a missing
 * server skips loudly; under CI=true it fails the run, never a silent skip.
 */
export async function startPairOrSkip(
  options: { replicas?: number } = {},
): Promise<MariadbPair | string> {
  const missing = missingMariadbBinaries();
  if (missing.length === 0) return startMariadbPair(options);
  const message = `MariaDB tests need ${missing.join(', ')} (apt-get install -y mariadb-server mariadb-client)`;
  if (process.env.CI === 'true') throw new Error(`${message}: required under CI=true`);
  // eslint-disable-next-line no-console -- a skipped real-server suite must be loud
  console.warn(`\n!!! SKIPPING MariaDB tests: ${message}\n`);
  return message;
}

/** The MariaDB pair a test file shares: `register()` inside its describe(), `require()` in tests. */
export interface MariadbPairSuite {
  /** Starts the pair before the suite (or skips it, see startPairOrSkip) and stops it after;
   * before each test restarts a server an earlier test killed and empties the app's tables. */
  register(): void;
  require(): MariadbPair;
}

export function mariadbPairSuite(): MariadbPairSuite {
  let pair: MariadbPair | undefined;
  let skipReason: string | undefined;
  const require = (): MariadbPair => {
    assert.ok(pair, 'the MariaDB pair did not start');
    return pair;
  };
  return {
    require,
    register() {
      before(async () => {
        const started = await startPairOrSkip();
        if (typeof started === 'string') skipReason = started;
        else pair = started;
      });
      after(async () => {
        await pair?.stop();
      });
      beforeEach(async (t) => {
        if (skipReason !== undefined) {
          return (t as { skip(message: string): void }).skip(skipReason);
        }
        const current = require();
        if (!current.primary.isRunning()) await current.primary.start();
        if (!current.replica.isRunning()) await current.replica.start();
        resetPair(current);
      });
    },
  };
}

/** Drops the app's tables on the primary and waits until the replica has dropped them too. */
export function resetPair(pair: MariadbPair): void {
  pair.replica.sql('STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=0; START SLAVE');
  pair.primary.sql(
    'DROP TABLE IF EXISTS users.users, users.users_prev, users.users_staging, users.users_replaced, users.data_state, users.idempotency_keys, users.kysely_migration, users.kysely_migration_lock',
  );
  pair.waitForReplication();
}

export interface MysqlApp {
  app: FastifyInstance;
  db: Database;
  url: string;
}

/**
 * An instance on the pair over real HTTP with `token` for admin writes, once its replica is in
 * rotation (writes go to the primary, reads to the replica).
 */
export async function startPairInstance(
  t: TestContext,
  pair: MariadbPair,
  token: string,
  env: RawEnv = {},
): Promise<{ url: string; token: string }> {
  const { url, db } = await startMysqlApp(t, pair, { ADMIN_TOKEN: token, ...env });
  await eventually(() => db.replicaStates()[0]?.healthy === true, 'the replica is in rotation');
  return { url, token };
}

/** The real app on the pair (primary + replica), listening on a free loopback port. */
export async function startMysqlApp(
  t: TestContext,
  pair: MariadbPair,
  env: RawEnv = {},
): Promise<MysqlApp> {
  const config = loadConfig({
    DATABASE_URL: pair.primary.url,
    DATABASE_REPLICA_URLS: pair.replica.url,
    DATA_FILE: `${REPO_ROOT}data/users.csv`,
    SERVER_NAME: 'mysql-test',
    REPLICA_PROBE_INTERVAL_MS: '200',
    DB_CONNECT_TIMEOUT_MS: '1000',
    LOG_LEVEL: 'silent',
    ...env,
  });
  // The metrics observe the database, and the database feeds the metrics' row count.
  const metrics = createMetrics({
    countUsersRows: () => db.read(countUsers),
    processMetrics: false,
    probesPrimary: true,
  });
  const db = openDatabase(config.database, { create: true, observer: metrics.db });
  await migrateToLatest(db);
  const app = buildApp(testAppDependencies(config, db, Date.now, metrics));
  t.after(async () => {
    await app.close();
    await db.close();
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, db, url };
}

/** Polls `condition` every 100 ms until true; fails after `timeoutMs` (bounded, never hangs). */
export async function eventually(
  condition: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 15_000,
) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
}

/**
 * A migrated database on the pair, closed when the test ends, once its replica probe finds the
 * replica healthy: reads then go where the service's go.
 */
export async function openMigratedOnPair(t: TestContext, pair: MariadbPair): Promise<Database> {
  const config = loadConfig({
    DATABASE_URL: pair.primary.url,
    DATABASE_REPLICA_URLS: pair.replica.url,
    REPLICA_PROBE_INTERVAL_MS: '200',
    DB_CONNECT_TIMEOUT_MS: '1000',
    LOG_LEVEL: 'silent',
  });
  const db = openDatabase(config.database, { create: true });
  t.after(() => db.close());
  await migrateToLatest(db);
  await eventually(() => db.replicaStates()[0]?.healthy === true, 'the replica is healthy');
  return db;
}
