import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { loadConfig } from '../../src/config/config.js';
import type { Database } from '../../src/db/database.js';
import { openDatabase } from '../../src/db/open-database.js';
import { mariadbPairSuite, openMigratedOnPair } from '../helpers/mariadb.js';
import {
  drillMigrationRenamesSwappedIndexes,
  drillSwapsKeepTheMigratedTable,
  MIGRATED_INDEXES,
  stagingIndexName,
  usersTableShape,
} from '../helpers/users-table-drills.js';

const pairSuite = mariadbPairSuite();

/** `url`'s server opened on its own (as the primary of a database with no replicas). */
function openServer(t: TestContext, url: string): Database {
  const config = loadConfig({ DATABASE_URL: url, LOG_LEVEL: 'silent' });
  const db = openDatabase(config.database, { create: false });
  t.after(() => db.close());
  return db;
}

/** A migrated database on the pair, the replica healthy, and a temp folder for backups. */
async function openOnPair(t: TestContext) {
  const pair = pairSuite.require();
  const db = await openMigratedOnPair(t, pair);
  const dir = await mkdtemp(join(tmpdir(), 'users-api-table-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return { pair, db, dir };
}

describe('the users table on the MariaDB pair', { timeout: 600_000 }, () => {
  pairSuite.register();

  it('a swapped-in users table is the table the migrations made, its indexes named alike, on the replica too', async (t) => {
    const { pair, db, dir } = await openOnPair(t);
    await drillSwapsKeepTheMigratedTable({ db, dir });
    pair.waitForReplication();
    assert.deepEqual(
      await usersTableShape(openServer(t, pair.replica.url).write, 'mysql'),
      await usersTableShape(db.write, 'mysql'),
    );
  });

  it('migration 0004 gives the indexes an older release swapped in their real names, on the replica too', async (t) => {
    const { pair, db, dir } = await openOnPair(t);
    await drillMigrationRenamesSwappedIndexes({ db, dir }, async () => {
      // That release named a swapped-in table's indexes after the staging table.
      for (const { name } of (await usersTableShape(db.write, 'mysql')).indexes) {
        await db.write.schema.dropIndex(name).on('users').execute();
      }
      for (const { column } of MIGRATED_INDEXES) {
        await db.write.schema
          .createIndex(stagingIndexName(column))
          .on('users')
          .column(column)
          .execute();
      }
    });
    pair.waitForReplication();
    assert.deepEqual(
      (await usersTableShape(openServer(t, pair.replica.url).write, 'mysql')).indexes,
      MIGRATED_INDEXES,
    );
  });
});
