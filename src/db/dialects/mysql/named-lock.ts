import { sql } from 'kysely';
import type { DatabaseExecutor } from '../../database.js';

/** The named lock every writer takes (MySQL locks are per server, across databases). */
export const WRITE_LOCK = 'users-api.write';

/**
 * Held by a backup for as long as its snapshot is open, and by a table swap (restore, replace
 * or if-empty import) around its RENAME. A snapshot's transaction keeps the users table's
 * metadata lock to its end; a RENAME needs that lock exclusively, so on the server that holds
 * the snapshot (the replica, once the RENAME is replicated) it would wait for the backup to
 * end, and every read of the table would queue behind it: replica reads stalled for the rest of
 * the backup (measured on the MariaDB pair). Instead the swap waits here, where nobody reads.
 */
export const SWAP_LOCK = 'users-api.swap';

/**
 * Runs `work` holding the named lock on `connection`; throws `refused()` when the lock is not
 * had within `waitMs`. A dead connection releases its locks by itself (the server frees them).
 */
export async function holdingNamedLock<T>(
  connection: DatabaseExecutor,
  name: string,
  waitMs: number,
  refused: () => Error,
  work: () => Promise<T>,
): Promise<T> {
  const { rows } = await sql<{ locked: number | string | null }>`
    SELECT GET_LOCK(${name}, ${Math.max(0, waitMs) / 1000}) AS locked`.execute(connection);
  if (Number(rows[0]?.locked) !== 1) throw refused();
  try {
    return await work();
  } finally {
    await sql`SELECT RELEASE_LOCK(${name})`.execute(connection).catch(() => undefined);
  }
}
