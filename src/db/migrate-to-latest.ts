import { Migrator, type Migration, type MigrationProvider } from 'kysely';
import type { Database } from './database.js';
import * as createUsers from './migrations/0001-create-users.js';
import * as mysqlUtf8mb4 from './migrations/0002-mysql-utf8mb4.js';
import * as usersQueryIndexes from './migrations/0003-users-query-indexes.js';
import * as usersIndexNames from './migrations/0004-users-index-names.js';
import * as replicationHeartbeat from './migrations/0005-replication-heartbeat.js';
import * as usersRowVersion from './migrations/0006-users-row-version.js';
import * as idempotencyKeys from './migrations/0007-idempotency-keys.js';

/** The static index of migrations, in order. A merged migration is never edited; add one. */
const MIGRATIONS: Record<string, Migration> = {
  '0001-create-users': createUsers,
  '0002-mysql-utf8mb4': mysqlUtf8mb4,
  '0003-users-query-indexes': usersQueryIndexes,
  '0004-users-index-names': usersIndexNames,
  '0005-replication-heartbeat': replicationHeartbeat,
  '0006-users-row-version': usersRowVersion,
  '0007-idempotency-keys': idempotencyKeys,
};

/** The newest migration: the schema version a backup records. */
export const LATEST_MIGRATION = Object.keys(MIGRATIONS).at(-1)!;

const staticProvider: MigrationProvider = {
  getMigrations: () => Promise.resolve(MIGRATIONS),
};

/**
 * Brings the schema to the latest migration on the write connection. Kysely's migrator takes a
 * lock, so instances starting together apply each migration once. Then the servers are probed
 * again, so reads and writes go by the schema as it is now. Returns the names applied now.
 */
export async function migrateToLatest(db: Database): Promise<string[]> {
  const migrator = new Migrator({ db: db.write, provider: staticProvider });
  const { error, results = [] } = await migrator.migrateToLatest();
  if (error !== undefined) {
    const failed = results.find((result) => result.status === 'Error')?.migrationName;
    // The cause's own words too: a test report or a one-line log shows the message alone.
    const reason = error instanceof Error ? error.message : 'an error that is not an Error';
    const step =
      failed === undefined ? 'migrating (before any migration ran)' : `migration ${failed}`;
    throw new Error(`${step} failed: ${reason}`, { cause: error });
  }
  await db.probeServers();
  return results.map((result) => result.migrationName);
}
