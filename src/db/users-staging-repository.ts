import { MysqlAdapter, sql, type Expression } from 'kysely';
import type { DatabaseExecutor, UsersTableName } from './database.js';

/**
 * Creates an empty users table under `table` (the staging table of a replace, or of a restore
 * that recreates a dropped table), but none of its secondary indexes: a bulk load builds them
 * afterwards with `createUsersIndexes`. `tableOptions` is appended to the statement (MySQL: the
 * character set of migration 0002).
 * @NOTE The users table as this release defines it; migrations 0001-0006 keep their own text
 * (never edited), and the users-table drills hold the two equal on both dialects.
 * @see ../../docs/design-notes.md#bulk-loads-build-indexes-last-the-staged-swap
 */
export async function createUsersTable(
  executor: DatabaseExecutor,
  table: UsersTableName,
  tableOptions?: Expression<unknown>,
): Promise<void> {
  let builder = executor.schema
    .createTable(table)
    .addColumn('id', 'integer', (col) => col.primaryKey().autoIncrement())
    .addColumn('name', 'varchar(255)', (col) => col.notNull())
    .addColumn('street', 'varchar(255)', (col) => col.notNull())
    .addColumn('city', 'varchar(255)', (col) => col.notNull())
    .addColumn('state', 'varchar(2)', (col) => col.notNull())
    .addColumn('user_date', 'varchar(8)', (col) => col.notNull())
    // The sortable date key of migration 0003: a swapped-in table must serve the same queries.
    .addColumn('user_date_key', 'varchar(6)', (col) => col.generatedAlwaysAs(userDateKey(executor)))
    // Migration 0006: rows a bulk load brings in were written by no single-user write.
    .addColumn('row_version', 'bigint', (col) => col.notNull().defaultTo(0));
  if (tableOptions !== undefined) builder = builder.modifyEnd(tableOptions);
  await builder.execute();
}

/**
 * Gives `table` the indexes migration 0003 gives `users` (what /api's filters and sorts use),
 * under the names they have there (`users_name_idx`, …), so a table swapped in as `users` has
 * them right. SQLite's index names are database-wide: there the live table's must be free.
 * Built once the rows are in: one sort per index instead of a B-tree insert per row, about 3×
 * faster for a large load on either dialect. One statement per index, so a MySQL replica builds
 * each one while the primary builds the next; `state` (the shortest keys) comes last, so the
 * replica's tail after the primary finishes is short.
 */
export async function createUsersIndexes(
  executor: DatabaseExecutor,
  table: UsersTableName,
): Promise<void> {
  for (const column of ['name', 'city', 'user_date_key', 'state'] as const) {
    await executor.schema.createIndex(`users_${column}_idx`).on(table).column(column).execute();
  }
}

/** `yymmdd` from the stored `dd/mm/yy`, in the dialect's SQL (as in migration 0003). */
function userDateKey(executor: DatabaseExecutor) {
  return executor.getExecutor().adapter instanceof MysqlAdapter
    ? sql`concat(substring(user_date, 7, 2), substring(user_date, 4, 2), substring(user_date, 1, 2))`
    : sql`substr(user_date, 7, 2) || substr(user_date, 4, 2) || substr(user_date, 1, 2)`;
}

export async function dropUsersTableIfExists(
  executor: DatabaseExecutor,
  table: UsersTableName,
): Promise<void> {
  await executor.schema.dropTable(table).ifExists().execute();
}

/** Whether `table` exists in the executor's database (its current schema on MySQL). */
export async function usersTableExists(
  executor: DatabaseExecutor,
  table: UsersTableName,
): Promise<boolean> {
  const tables = await executor.introspection.getTables();
  return tables.some((candidate) => candidate.name === table && !candidate.isView);
}

/** Renames `from` to `to` (SQLite; MySQL renames both tables in one statement instead). */
export async function renameUsersTable(
  executor: DatabaseExecutor,
  from: UsersTableName,
  to: UsersTableName,
): Promise<void> {
  await sql`ALTER TABLE ${sql.table(from)} RENAME TO ${sql.table(to)}`.execute(executor);
}
