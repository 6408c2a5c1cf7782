import { AppError } from '../errors.js';
import type { Database, DatabaseExecutor, WriteTransaction } from './database.js';
import { isDatabaseFailure } from './is-database-failure.js';

/**
 * Starts a transaction on `executor` (the write connection, or the write lock's connection)
 * and bumps the data version at once, so every instance's cache sees the write when it commits.
 * On SQLite the UPDATE also takes the database's write lock, so whatever the caller reads next
 * cannot change under it until commit or rollback.
 * `newUsersTable` (a swap brought in another users table): the table's generation becomes the
 * new data version too, so no user ETag from the old table matches a row of the new one.
 * A database that cannot take writes is reported as ERR_DB_PRIMARY_UNAVAILABLE (503).
 */
export async function beginWriteTransaction(
  db: Database,
  executor: DatabaseExecutor = db.write,
  { newUsersTable = false }: { newUsersTable?: boolean } = {},
): Promise<WriteTransaction> {
  let trx: WriteTransaction | undefined;
  try {
    trx = await executor.startTransaction().execute();
    await trx
      .updateTable('data_state')
      .set((eb) => ({ data_version: eb('data_version', '+', 1) }))
      .where('id', '=', 1)
      .execute();
    if (newUsersTable) {
      await trx
        .updateTable('data_state')
        .set((eb) => ({ users_generation: eb.ref('data_version') }))
        .where('id', '=', 1)
        .execute();
    }
    return trx;
  } catch (error) {
    // Best effort: if the connection is gone, the server has already dropped the transaction.
    await trx
      ?.rollback()
      .execute()
      .catch(() => undefined);
    throw writesUnavailable(db, error);
  }
}

/** `error` as ERR_DB_PRIMARY_UNAVAILABLE when it means the database cannot take writes. */
export function writesUnavailable(db: Pick<Database, 'dialect'>, error: unknown): unknown {
  if (!isDatabaseFailure(error)) return error;
  if (isStorageFull(error)) {
    // The server is up: "unavailable" alone would send the operator after the wrong fault.
    return new AppError(
      'ERR_DB_PRIMARY_UNAVAILABLE',
      'the database server is out of storage (disk or table full): writes are refused until space is freed; nothing was written; reads go on',
      { cause: error },
    );
  }
  return new AppError(
    'ERR_DB_PRIMARY_UNAVAILABLE',
    db.dialect === 'mysql'
      ? 'primary database unavailable: writes are refused until it is back; reads go on'
      : 'database unavailable for writes; try again shortly',
    { cause: error },
  );
}

/** MySQL ER_DISK_FULL, or ER_RECORD_FILE_FULL (InnoDB could not extend a file). */
function isStorageFull(error: unknown): boolean {
  const { errno } = error as { errno?: unknown };
  return errno === 1021 || errno === 1114;
}
