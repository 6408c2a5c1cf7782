import { describe, it } from 'node:test';
import { createTestDatabase } from '../helpers/test-database.js';
import {
  drillMigrationRenamesSwappedIndexes,
  drillSwapsKeepTheMigratedTable,
  MIGRATED_INDEXES,
  stagingIndexName,
  usersTableShape,
} from '../helpers/users-table-drills.js';

describe('the users table on SQLite', () => {
  it('a swapped-in users table is the table the migrations made, its indexes named alike', async (t) => {
    const { db, dir } = await createTestDatabase(t);
    await drillSwapsKeepTheMigratedTable({ db, dir });
  });

  it('migration 0004 gives the indexes an older release swapped in their real names', async (t) => {
    const { db, dir } = await createTestDatabase(t);
    await drillMigrationRenamesSwappedIndexes({ db, dir }, async () => {
      // Index names are database-wide here: that release's first restore kept the migrated table,
      // real index names and all, as users_prev, and named the swapped-in table's after staging.
      for (const table of ['users', 'users_prev'] as const) {
        for (const { name } of (await usersTableShape(db.write, 'sqlite', table)).indexes) {
          await db.write.schema.dropIndex(name).execute();
        }
      }
      for (const { name, column } of MIGRATED_INDEXES) {
        await db.write.schema
          .createIndex(stagingIndexName(column))
          .on('users')
          .column(column)
          .execute();
        await db.write.schema.createIndex(name).on('users_prev').column(column).execute();
      }
    });
  });
});
