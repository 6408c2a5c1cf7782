import { MysqlAdapter, sql, type Kysely } from 'kysely';

/**
 * What `/api`'s filters and sorts need. `user_date_key` is `yymmdd` computed from the stored
 * `dd/mm/yy` (a virtual generated column: nothing to write, nothing to back-fill), so USER_DATE
 * sorts as a date. Each index ends, implicitly, in the primary key (SQLite's rowid, InnoDB's
 * clustered key): `ORDER BY column, id` with a keyset cursor reads a range, never sorts.
 * The expression is dialect SQL, so this migration checks the adapter like 0002 does.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  const mysql = db.getExecutor().adapter instanceof MysqlAdapter;
  const key = mysql
    ? sql`concat(substring(user_date, 7, 2), substring(user_date, 4, 2), substring(user_date, 1, 2))`
    : sql`substr(user_date, 7, 2) || substr(user_date, 4, 2) || substr(user_date, 1, 2)`;
  await db.schema
    .alterTable('users')
    .addColumn('user_date_key', 'varchar(6)', (col) => col.generatedAlwaysAs(key))
    .execute();
  for (const column of ['name', 'city', 'state', 'user_date_key']) {
    await db.schema.createIndex(`users_${column}_idx`).on('users').column(column).execute();
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const column of ['name', 'city', 'state', 'user_date_key']) {
    await db.schema.dropIndex(`users_${column}_idx`).on('users').execute();
  }
  await db.schema.alterTable('users').dropColumn('user_date_key').execute();
}
