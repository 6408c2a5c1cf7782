import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { createBackup } from '../../src/backup/create-backup.js';
import { restoreBackup } from '../../src/backup/restore-backup.js';
import type { Database, DatabaseExecutor, UsersTableName } from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrate-to-latest.js';
import { countUsers } from '../../src/db/users-repository.js';
import { importUsers } from '../../src/importer/import-users.js';
import { generatedSource, type DrillContext } from './backup-drills.js';

/** The users table as its server describes it: its columns, and its secondary indexes. */
export interface UsersTableShape {
  /** SQLite: the table's CREATE statement; MySQL: one line per column, then its collation. */
  columns: string[];
  /** Its secondary indexes, by name and column, sorted by column. */
  indexes: { name: string; column: string }[];
}

/** How `executor`'s server describes its `table` (`users` unless named). */
export async function usersTableShape(
  executor: DatabaseExecutor,
  dialect: Database['dialect'],
  table: UsersTableName = 'users',
): Promise<UsersTableShape> {
  if (dialect === 'sqlite') {
    const created = await sql<{ sql: string }>`
      select sql from sqlite_master where type = 'table' and name = ${table}`.execute(executor);
    const indexes = await sql<{ name: string; column: string }>`
      select il.name as name, ii.name as "column" from pragma_index_list(${table}) as il,
        pragma_index_info(il.name) as ii
      where il.origin = 'c' order by ii.name`.execute(executor);
    return { columns: created.rows.map((row) => row.sql), indexes: indexes.rows };
  }
  const columns = await sql<{ line: string }>`
    select concat_ws(' ', column_name, column_type, is_nullable, extra, generation_expression,
      collation_name) as line
    from information_schema.columns where table_schema = database() and table_name = ${table}
    order by ordinal_position`.execute(executor);
  const collation = await sql<{ line: string }>`
    select table_collation as line from information_schema.tables
    where table_schema = database() and table_name = ${table}`.execute(executor);
  const indexes = await sql<{ name: string; column: string }>`
    select index_name as name, column_name as "column" from information_schema.statistics
    where table_schema = database() and table_name = ${table} and index_name <> 'PRIMARY'
    order by column_name`.execute(executor);
  return {
    columns: [...columns.rows, ...collation.rows].map((row) => row.line),
    indexes: indexes.rows,
  };
}

/** The indexes `users` has after its migrations, under the names migration 0003 gave them. */
export const MIGRATED_INDEXES = [
  { name: 'users_city_idx', column: 'city' },
  { name: 'users_name_idx', column: 'name' },
  { name: 'users_state_idx', column: 'state' },
  { name: 'users_user_date_key_idx', column: 'user_date_key' },
];

/**
 * The users table a swap brings in (a replace import, a restore, a restore after the table was
 * dropped) is the table the migrations made: the same columns, types, generated key and
 * collation, and the same indexes under the same names. The staging table is defined in code
 * (createUsersTable), the migrations are history: this holds the two together.
 */
export async function drillSwapsKeepTheMigratedTable(ctx: DrillContext): Promise<void> {
  const { db } = ctx;
  const shape = () => usersTableShape(db.write, db.dialect);
  const migrated = await shape();
  assert.deepEqual(migrated.indexes, MIGRATED_INDEXES, 'after the migrations');
  await importUsers(db, generatedSource(50), 'replace');
  assert.deepEqual(await shape(), migrated, 'after a replace import');
  const backup = await createBackup(db, { dir: ctx.dir, serverName: 'drill' });
  // Twice: the second restore retires a table that a swap brought in.
  for (const round of [1, 2]) {
    await restoreBackup(db, backup.path);
    assert.deepEqual(await shape(), migrated, `after restore ${round}`);
  }
  await importUsers(db, generatedSource(50), 'replace');
  assert.deepEqual(await shape(), migrated, 'after a replace import that follows a restore');
  await db.write.schema.dropTable('users').execute();
  await restoreBackup(db, backup.path);
  assert.deepEqual(await shape(), migrated, 'after a restore into a dropped table');
}

/** The migration that gives swapped-in indexes their real names. */
const USERS_INDEX_NAMES_MIGRATION = '0004-users-index-names';
const FROM_USERS_INDEX_NAMES = [
  USERS_INDEX_NAMES_MIGRATION,
  '0005-replication-heartbeat',
  '0006-users-row-version',
  '0007-idempotency-keys',
];

/** The name an older release's swap gave the index on `column` (after the staging table). */
export function stagingIndexName(column: string): string {
  return `users_staging_${column}_0a1b2c3d`;
}

/**
 * Migration 0004 on a database that a release before it swapped tables in: the live table's
 * indexes, named after the staging table (`users_staging_name_1a2b3c4d`, …), get their real
 * names, and the table a restore kept (`users_prev`) keeps its rows. `leaveAsAnOldSwapDid`
 * names the indexes as that release left them, after a replace import and a restore.
 */
export async function drillMigrationRenamesSwappedIndexes(
  ctx: DrillContext,
  leaveAsAnOldSwapDid: () => Promise<void>,
): Promise<void> {
  const { db } = ctx;
  await importUsers(db, generatedSource(50), 'replace');
  const backup = await createBackup(db, { dir: ctx.dir, serverName: 'drill' });
  await restoreBackup(db, backup.path);
  await leaveAsAnOldSwapDid();
  // The migrator runs no migration before one already applied: the later ones go again too.
  await sql`delete from kysely_migration where name >= ${USERS_INDEX_NAMES_MIGRATION}`.execute(
    db.write,
  );
  assert.deepEqual(await migrateToLatest(db), FROM_USERS_INDEX_NAMES);
  assert.deepEqual((await usersTableShape(db.write, db.dialect)).indexes, MIGRATED_INDEXES);
  assert.equal(await countUsers(db.write), 50);
  const { rows } = await sql<{ count: number | string }>`
    select count(*) as count from users_prev`.execute(db.write);
  assert.equal(Number(rows[0]?.count), 50, 'the kept table still holds its rows');
  // Once more on names that are right already: nothing to do.
  // The migrator runs no migration before one already applied: the later ones go again too.
  await sql`delete from kysely_migration where name >= ${USERS_INDEX_NAMES_MIGRATION}`.execute(
    db.write,
  );
  assert.deepEqual(await migrateToLatest(db), FROM_USERS_INDEX_NAMES);
  assert.deepEqual((await usersTableShape(db.write, db.dialect)).indexes, MIGRATED_INDEXES);
}
