import { sql, type Expression } from 'kysely';
import type { DatabaseExecutor, UsersTableName } from './database.js';

/**
 * Creates an empty users table under `table` with the columns of migration 0001 (a restore's
 * staging table, or `users` itself when the restore recreates a dropped table). `tableOptions`
 * is appended to the statement (MySQL: the character set of migration 0002).
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
    .addColumn('user_date', 'varchar(8)', (col) => col.notNull());
  if (tableOptions !== undefined) builder = builder.modifyEnd(tableOptions);
  await builder.execute();
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
