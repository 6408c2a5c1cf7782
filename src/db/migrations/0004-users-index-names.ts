import { MysqlAdapter, sql, type Kysely } from 'kysely';

/** The columns migration 0003 indexed, each as `users_<column>_idx`. */
const COLUMNS = ['name', 'city', 'state', 'user_date_key'];

/**
 * Gives the users table's indexes the names migration 0003 gave them. Before this release a
 * replace or restore swapped in a table whose indexes were named after the staging table
 * (`users_staging_name_1a2b3c4d`, …). A table that never was swapped has the right names
 * already, and a database without a users table (dropped, awaiting a restore) has nothing to
 * rename: both are left as they are. The dialects differ, so this checks the adapter like 0002.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  if (db.getExecutor().adapter instanceof MysqlAdapter) await renameOnMysql(db);
  else await renameOnSqlite(db);
}

export async function down(): Promise<void> {
  // The old names carried a random suffix: there is nothing to go back to.
}

async function renameOnMysql(db: Kysely<unknown>): Promise<void> {
  for (const column of COLUMNS) {
    const name = `users_${column}_idx`;
    const { rows } = await sql<{ name: string }>`
      select index_name as name from information_schema.statistics
      where table_schema = database() and table_name = 'users' and column_name = ${column}
        and (index_name = ${name} or index_name like 'users!_staging!_%' escape '!')`.execute(db);
    const stale = rows[0]?.name;
    if (stale === undefined || rows.some((row) => row.name === name)) continue;
    await sql`alter table users rename index ${sql.id(stale)} to ${sql.id(name)}`.execute(db);
  }
}

/** SQLite renames no index: the stale one is dropped and the index built under its name. */
async function renameOnSqlite(db: Kysely<unknown>): Promise<void> {
  for (const column of COLUMNS) {
    const name = `users_${column}_idx`;
    const { rows: stale } = await sql<{ name: string }>`
      select il.name as name from pragma_index_list('users') as il,
        pragma_index_info(il.name) as ii
      where il.origin = 'c' and ii.name = ${column} and il.name glob 'users_staging_*'`.execute(db);
    if (stale.length === 0) continue;
    // Index names are database-wide: the table a restore kept (users_prev) may hold this one.
    // A kept table keeps its rows, not its indexes, as a restore now leaves it.
    const { rows: holder } = await sql<{ table: string }>`
      select tbl_name as "table" from sqlite_master
      where type = 'index' and name = ${name}`.execute(db);
    if (holder[0]?.table === 'users') continue;
    if (holder[0] !== undefined) await db.schema.dropIndex(name).execute();
    for (const { name: old } of stale) await db.schema.dropIndex(old).execute();
    await db.schema.createIndex(name).on('users').column(column).execute();
  }
}
