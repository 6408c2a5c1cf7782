import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { createBackup } from '../../src/backup/create-backup.js';
import { restoreBackup } from '../../src/backup/restore-backup.js';
import type { Database, DatabaseExecutor } from '../../src/db/database.js';
import { importUsers } from '../../src/importer/import-users.js';
import { generatedSource, type DrillContext } from './backup-drills.js';

/** The users table as its server describes it: its columns, and its secondary indexes. */
export interface UsersTableShape {
  /** SQLite: the table's CREATE statement; MySQL: one line per column, then its collation. */
  columns: string[];
  /** `index name (column)`, sorted by column. */
  indexes: { name: string; column: string }[];
}

/** How `executor`'s server describes its `users` table. */
export async function usersTableShape(
  executor: DatabaseExecutor,
  dialect: Database['dialect'],
): Promise<UsersTableShape> {
  if (dialect === 'sqlite') {
    const table = await sql<{ sql: string }>`
      select sql from sqlite_master where type = 'table' and name = 'users'`.execute(executor);
    const indexes = await sql<{ name: string; column: string }>`
      select il.name as name, ii.name as "column" from pragma_index_list('users') as il,
        pragma_index_info(il.name) as ii
      where il.origin = 'c' order by ii.name`.execute(executor);
    return { columns: table.rows.map((row) => row.sql), indexes: indexes.rows };
  }
  const columns = await sql<{ line: string }>`
    select concat_ws(' ', column_name, column_type, is_nullable, extra, generation_expression,
      collation_name) as line
    from information_schema.columns where table_schema = database() and table_name = 'users'
    order by ordinal_position`.execute(executor);
  const table = await sql<{ line: string }>`
    select table_collation as line from information_schema.tables
    where table_schema = database() and table_name = 'users'`.execute(executor);
  const indexes = await sql<{ name: string; column: string }>`
    select index_name as name, column_name as "column" from information_schema.statistics
    where table_schema = database() and table_name = 'users' and index_name <> 'PRIMARY'
    order by column_name`.execute(executor);
  return {
    columns: [...columns.rows, ...table.rows].map((row) => row.line),
    indexes: indexes.rows,
  };
}

/** The shape with the indexes' names left out: what a swapped-in table must match. */
function withoutIndexNames(shape: UsersTableShape) {
  return { columns: shape.columns, indexed: shape.indexes.map((index) => index.column) };
}

/**
 * The users table a swap brings in (a replace import, a restore, a restore after the table was
 * dropped) is the table the migrations made: the same columns, types, generated key and
 * collation, indexed on the same columns. The staging table is defined in code
 * (createUsersTable), the migrations are history: this holds the two together.
 */
export async function drillSwapsKeepTheMigratedTable(ctx: DrillContext): Promise<void> {
  const { db } = ctx;
  const migrated = withoutIndexNames(await usersTableShape(db.write, db.dialect));
  await importUsers(db, generatedSource(50), 'replace');
  assert.deepEqual(
    withoutIndexNames(await usersTableShape(db.write, db.dialect)),
    migrated,
    'after a replace import',
  );
  const backup = await createBackup(db, { dir: ctx.dir, serverName: 'drill' });
  // Twice: the second restore retires a table that a swap brought in.
  for (const round of [1, 2]) {
    await restoreBackup(db, backup.path);
    assert.deepEqual(
      withoutIndexNames(await usersTableShape(db.write, db.dialect)),
      migrated,
      `after restore ${round}`,
    );
  }
  await db.write.schema.dropTable('users').execute();
  await restoreBackup(db, backup.path);
  assert.deepEqual(
    withoutIndexNames(await usersTableShape(db.write, db.dialect)),
    migrated,
    'after a restore into a dropped table',
  );
}
