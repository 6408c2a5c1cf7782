import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sql } from 'kysely';
import { registerRepositorySuite } from '../helpers/repository-suite.js';
import { createTestDatabase } from '../helpers/test-database.js';
import { storeTrickyUsers } from '../helpers/tricky-users.js';

describe('users repository on SQLite', () => {
  registerRepositorySuite({
    dialect: 'sqlite',
    open: async (t) => (await createTestDatabase(t)).db,
  });

  it('a swapped-in table serves a state filter through its own state index', async (t) => {
    const { db } = await createTestDatabase(t);
    await storeTrickyUsers(db);
    const { rows } = await sql<{ name: string }>`
      select il.name as name from pragma_index_list('users') as il,
        pragma_index_info(il.name) as ii
      where il.origin = 'c' and ii.name = 'state'`.execute(db.write);
    const stateIndex = rows[0]?.name;
    assert.ok(stateIndex !== undefined, 'users has an index on state');
    const plan = await sql<{ detail: string }>`
      explain query plan select id from users where state = 'NY' order by id`.execute(db.write);
    assert.match(plan.rows.map((row) => row.detail).join(' '), new RegExp(`INDEX ${stateIndex} `));
  });
});
