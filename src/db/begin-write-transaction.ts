import type { Database, WriteTransaction } from './database.js';

/**
 * Starts a transaction on the write connection and takes the write lock at once by bumping the
 * data version, so whatever the caller reads next cannot change under it until commit or
 * rollback. (SQLite: the UPDATE takes the database's write lock; MySQL: it locks the row.)
 */
export async function beginWriteTransaction(db: Database): Promise<WriteTransaction> {
  const trx = await db.write.startTransaction().execute();
  try {
    await trx
      .updateTable('data_state')
      .set((eb) => ({ data_version: eb('data_version', '+', 1) }))
      .where('id', '=', 1)
      .execute();
    return trx;
  } catch (error) {
    await trx.rollback().execute();
    throw error;
  }
}
