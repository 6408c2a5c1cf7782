import { AppError } from '../errors.js';
import type { Database, WriteTransaction } from './database.js';
import { isDatabaseFailure } from './is-database-failure.js';

/**
 * Starts a transaction on the write connection and takes the write lock at once by bumping the
 * data version, so whatever the caller reads next cannot change under it until commit or
 * rollback. (SQLite: the UPDATE takes the database's write lock; MySQL: it locks the row.)
 * A database that cannot take writes is reported as ERR_DB_PRIMARY_UNAVAILABLE (503).
 */
export async function beginWriteTransaction(db: Database): Promise<WriteTransaction> {
  let trx: WriteTransaction | undefined;
  try {
    trx = await db.write.startTransaction().execute();
    await trx
      .updateTable('data_state')
      .set((eb) => ({ data_version: eb('data_version', '+', 1) }))
      .where('id', '=', 1)
      .execute();
    return trx;
  } catch (error) {
    // Best effort: if the connection is gone, the server has already dropped the transaction.
    await trx
      ?.rollback()
      .execute()
      .catch(() => undefined);
    if (!isDatabaseFailure(error)) throw error;
    throw new AppError(
      'ERR_DB_PRIMARY_UNAVAILABLE',
      db.dialect === 'mysql'
        ? 'primary database unavailable: writes are refused until it is back; reads go on'
        : 'database unavailable for writes; try again shortly',
      { cause: error },
    );
  }
}
