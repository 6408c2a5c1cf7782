import { beginWriteTransaction } from '../db/begin-write-transaction.js';
import type { Database } from '../db/database.js';
import type { KeyedWrite } from '../db/idempotency-keys-repository.js';
import {
  deleteUser,
  findUserById,
  insertUser,
  readDataVersion,
  readUsersGeneration,
  updateUser,
  type VersionedUser,
} from '../db/users-repository.js';
import type { User } from './user.js';

/**
 * What a single-user write does, decided from the user as it is now inside the write
 * transaction (undefined: no such user, or a create): the user to store, `null` to delete it.
 * It throws to refuse (unknown id, a stale If-Match, a bad body): nothing is written then.
 */
export type UserChange = (current: VersionedUser | undefined) => User | null;

export interface UserWritten {
  /** The data version this write committed (the page cache re-renders this user's page). */
  version: number;
  before: VersionedUser | undefined;
  /** The user as stored now; undefined after a delete. */
  after: VersionedUser | undefined;
}

/**
 * Told what a write is about to commit, before the commit: returns what to do if the commit
 * fails (the page cache notes the changed user this way, so no build sees the version first).
 */
export type BeforeCommit = (written: UserWritten) => () => void;

/**
 * Creates (`id` undefined), replaces or deletes one user under the database's write lock, so it
 * takes its turn with imports and restores on every instance and never interleaves with a
 * swap. The row's version becomes the data version this write commits, then the call waits for
 * the replicas like an import does (read-your-writes anywhere). `keyed` (an Idempotency-Key):
 * its claim runs first in the transaction, its record is written just before the commit.
 */
export async function writeUser(
  db: Database,
  id: number | undefined,
  change: UserChange,
  beforeCommit?: BeforeCommit,
  keyed?: KeyedWrite<UserWritten>,
): Promise<UserWritten> {
  const written = await db.withWriteLock(async (locked) => {
    const trx = await beginWriteTransaction(db, locked);
    let undo: (() => void) | undefined;
    try {
      await keyed?.claim(trx);
      const before = id === undefined ? undefined : await findUserById(trx, id);
      const user = change(before);
      const version = await readDataVersion(trx);
      const generation = await readUsersGeneration(trx);
      let after: VersionedUser | undefined;
      if (user === null) {
        if (before !== undefined) await deleteUser(trx, before.id);
      } else if (before === undefined) {
        const newId = await insertUser(trx, user, version);
        after = { ...user, id: newId, rowVersion: version, generation };
      } else {
        await updateUser(trx, before.id, user, version);
        after = { ...user, id: before.id, rowVersion: version, generation };
      }
      await keyed?.record(trx, { version, before, after });
      undo = beforeCommit?.({ version, before, after });
      await trx.commit().execute();
      return { version, before, after };
    } catch (error) {
      // First, while the lock is held: no other write can commit this version number yet.
      undo?.();
      if (!trx.isCommitted && !trx.isRolledBack) {
        await trx
          .rollback()
          .execute()
          .catch(() => undefined); // the error that stopped the write is the one to report
      }
      throw error;
    }
  });
  await db.waitForReplicas();
  return written;
}
