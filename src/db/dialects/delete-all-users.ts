import { MysqlAdapter } from 'kysely';
import type { DatabaseTransaction } from '../database.js';

/** Rows per DELETE on MySQL: each statement a second or two, far inside DB_QUERY_TIMEOUT_MS. */
const MYSQL_DELETE_BATCH_ROWS = 50_000;

/**
 * Empties the users table inside the caller's transaction. On MySQL one DELETE of a large table
 * (every row and its index entries) can outlast DB_QUERY_TIMEOUT_MS, which drops the connection:
 * measured here, a 1,000,000-row table took over 10 s. So it deletes in batches, still in the
 * one transaction (TRUNCATE would commit it). SQLite clears the table in one fast statement.
 */
export async function deleteAllUsersRows(trx: DatabaseTransaction): Promise<void> {
  if (!(trx.getExecutor().adapter instanceof MysqlAdapter)) {
    await trx.deleteFrom('users').execute();
    return;
  }
  for (;;) {
    const result = await trx
      .deleteFrom('users')
      .orderBy('id')
      .limit(MYSQL_DELETE_BATCH_ROWS)
      .executeTakeFirst();
    if (Number(result.numDeletedRows) < MYSQL_DELETE_BATCH_ROWS) return;
  }
}
