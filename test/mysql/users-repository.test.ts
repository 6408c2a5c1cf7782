import { describe, type TestContext } from 'node:test';
import { loadConfig } from '../../src/config/config.js';
import type { Database } from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrate-to-latest.js';
import { openDatabase } from '../../src/db/open-database.js';
import { eventually, mariadbPairSuite } from '../helpers/mariadb.js';
import { registerRepositorySuite } from '../helpers/repository-suite.js';

const pairSuite = mariadbPairSuite();

/** A migrated database on the pair (emptied before each test), read through the replica. */
async function openOnPair(t: TestContext): Promise<Database> {
  const pair = pairSuite.require();
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
  // Reads go where the service's go: the replica, once its probe finds it healthy.
  await eventually(() => db.replicaStates()[0]?.healthy === true, 'the replica is healthy');
  return db;
}

describe('users repository on the MariaDB pair', { timeout: 600_000 }, () => {
  pairSuite.register();
  registerRepositorySuite({ dialect: 'mysql', open: openOnPair });
});
