import { MysqlAdapter, sql, type Kysely } from 'kysely';

/**
 * MySQL/MariaDB tables take the database's default character set, which on MariaDB is latin1:
 * names outside it would be refused or mangled. utf8mb4_bin stores every UTF-8 text exactly
 * and compares it byte for byte. SQLite stores UTF-8 already: nothing to do there.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  if (!(db.getExecutor().adapter instanceof MysqlAdapter)) return;
  await sql`ALTER TABLE users CONVERT TO CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`.execute(db);
}

export async function down(): Promise<void> {
  // Converting back to a narrower character set could lose data; leave the table as it is.
}
