import { describe, it } from 'node:test';
import { createTestDatabase } from '../helpers/test-database.js';
import { drillSwapsKeepTheMigratedTable } from '../helpers/users-table-drills.js';

describe('the users table on SQLite', () => {
  it('a swapped-in users table is the table the migrations made', async (t) => {
    const { db, dir } = await createTestDatabase(t);
    await drillSwapsKeepTheMigratedTable({ db, dir });
  });
});
