import type { Kysely } from 'kysely';

/**
 * What single-user writes need for their ETags (docs/design-notes.md, "User ETags"):
 * `users.row_version`, the data version of the write that last changed the row (0: loaded by an
 * import or restore), and `data_state.users_generation`, the data version at which the live
 * users table was swapped in. A replace restarts ids at 1, so a row version alone could name a
 * different user; together they cannot. Constant defaults: both dialects add the column
 * without rewriting the rows (MariaDB instantly, SQLite by editing the schema text).
 * Idempotent: a test or an operator may run this migration again after deleting its record.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  if (!(await hasColumn(db, 'users', 'row_version'))) {
    await db.schema
      .alterTable('users')
      .addColumn('row_version', 'bigint', (col) => col.notNull().defaultTo(0))
      .execute();
  }
  if (!(await hasColumn(db, 'data_state', 'users_generation'))) {
    await db.schema
      .alterTable('data_state')
      .addColumn('users_generation', 'bigint', (col) => col.notNull().defaultTo(0))
      .execute();
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('data_state').dropColumn('users_generation').execute();
  await db.schema.alterTable('users').dropColumn('row_version').execute();
}

async function hasColumn(db: Kysely<unknown>, table: string, column: string): Promise<boolean> {
  const tables = await db.introspection.getTables();
  return (
    tables
      .find((candidate) => candidate.name === table)
      ?.columns.some((candidate) => candidate.name === column) ?? false
  );
}
