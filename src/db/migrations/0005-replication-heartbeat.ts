import { MysqlAdapter, sql, type Kysely } from 'kysely';

/**
 * The replication heartbeat (pt-heartbeat's method): one row that the instance holding the
 * named lock `users-api.heartbeat` rewrites on the primary every second with the primary's
 * clock. A replica's copy of the row says how far behind it is, with no replication privilege
 * (see docs/design-notes.md, "Replica lag from a heartbeat"). MySQL only: a SQLite file has no
 * replicas, so it keeps exactly the tables it uses. `if not exists` because a test or an
 * operator may run this migration again after deleting its record.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  if (!(db.getExecutor().adapter instanceof MysqlAdapter)) return;
  await sql`
    CREATE TABLE IF NOT EXISTS replication_heartbeat (
      id INT NOT NULL PRIMARY KEY,
      beat_us BIGINT NOT NULL,
      server_id BIGINT UNSIGNED NOT NULL,
      writer VARCHAR(255) NOT NULL
    )`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  if (!(db.getExecutor().adapter instanceof MysqlAdapter)) return;
  await sql`DROP TABLE IF EXISTS replication_heartbeat`.execute(db);
}
