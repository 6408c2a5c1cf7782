import { beginWriteTransaction } from '../db/begin-write-transaction.js';
import type { Database } from '../db/database.js';
import type { KeyedWrite } from '../db/idempotency-keys-repository.js';
import { readUsersGeneration } from '../db/users-repository.js';
import { AppError } from '../errors.js';
import type { User } from '../users/user.js';
import type { ImportSource } from './import-source.js';
import { readUsersInWorker } from './read-users-in-worker.js';
import { MAX_REPORTED_BAD_ROWS } from './validate-records.js';

export const IMPORT_MODES = ['if-empty', 'append', 'replace'] as const;
/** `if-empty`: only into an empty table. `append`: after the rows there. `replace`: instead of them. */
export type ImportMode = (typeof IMPORT_MODES)[number];

export type ImportResult =
  | { status: 'imported'; rows: number }
  | { status: 'skipped'; reason: 'table not empty'; rows: number };

/**
 * How an import ended, for metrics. `rejected`: the input was bad (bad rows, unreadable file, no
 * rows); `failed`: anything else (the database, the disk).
 */
export type ImportOutcome = 'imported' | 'skipped' | 'rejected' | 'failed';

/** What a keyed append records: its rows and the users table generation it went into. */
export interface AppendWritten {
  rows: number;
  usersGeneration: number;
}

/** Hears how each import ended; metrics implement it. */
export type ImportObserver = (outcome: ImportOutcome, rows: number) => void;

/**
 * Imports users all-or-nothing: the source is streamed and every row validated; any bad row
 * throws ERR_IMPORT_BAD_ROWS listing each one (up to 100 rows) and changes nothing.
 * `append` inserts in batches inside one write transaction (under the write lock) that commits
 * only when every row is good. `if-empty` and `replace` load a staging table and swap it in
 * (`db.replaceUsersTable`); `if-empty` checks under the write lock, so concurrent calls from
 * any number of instances leave exactly one copy. `observe` hears the outcome and the rows.
 * `keyed` (an append's Idempotency-Key): claimed first inside the append's transaction, recorded
 * just before its commit.
 */
export async function importUsers(
  db: Database,
  source: ImportSource,
  mode: ImportMode,
  observe: ImportObserver = () => undefined,
  keyed?: KeyedWrite<AppendWritten>,
): Promise<ImportResult> {
  try {
    const result = await importUsersOnce(db, source, mode, keyed);
    observe(result.status, result.status === 'imported' ? result.rows : 0);
    return result;
  } catch (error) {
    observe(error instanceof AppError && error.status < 500 ? 'rejected' : 'failed', 0);
    throw error;
  }
}

async function importUsersOnce(
  db: Database,
  source: ImportSource,
  mode: ImportMode,
  keyed: KeyedWrite<AppendWritten> | undefined,
): Promise<ImportResult> {
  if (mode === 'append') {
    const rows = await db.withWriteLock(async (locked) => {
      const trx = await beginWriteTransaction(db, locked);
      try {
        await keyed?.claim(trx);
        const read = await readUsers(db, source, (users) => db.insertUsers(trx, users));
        if (keyed !== undefined) {
          await keyed.record(trx, { rows: read, usersGeneration: await readUsersGeneration(trx) });
        }
        await trx.commit().execute();
        return read;
      } catch (error) {
        if (!trx.isCommitted && !trx.isRolledBack) {
          // A lost connection cannot roll back, and need not: the server drops the open
          // transaction with it. The original error is the one worth reporting.
          await trx
            .rollback()
            .execute()
            .catch(() => undefined);
        }
        throw error;
      }
    });
    await db.waitForReplicas();
    return { status: 'imported', rows };
  }
  let rows = 0;
  const outcome = await db.replaceUsersTable(
    async (insert) => {
      rows = await readUsers(db, source, insert);
    },
    { ifEmpty: mode === 'if-empty', keepPrevious: false },
  );
  return outcome.replaced
    ? { status: 'imported', rows }
    : { status: 'skipped', reason: 'table not empty', rows: outcome.rows };
}

/**
 * Reads and validates every row of `source` (in a worker thread), handing the good ones to
 * `insert` in batches of the dialect's size; returns how many rows were read. Throws
 * ERR_IMPORT_BAD_ROWS (after reading on to list them) or ERR_IMPORT_NO_ROWS, so the caller never
 * commits a bad file.
 */
async function readUsers(
  db: Database,
  source: ImportSource,
  insert: (users: readonly User[]) => Promise<void>,
): Promise<number> {
  // One batch is written while the next is parsed: on a networked database the two overlap
  // instead of taking turns. At most one insert is in flight, so memory stays bounded.
  let inFlight: Promise<void> = Promise.resolve();
  let summary;
  try {
    summary = await readUsersInWorker(source, db.maxInsertRows, async (users) => {
      await inFlight;
      inFlight = insert(users);
      // Awaited before the next batch and before returning; this only keeps it from being
      // reported as unhandled while the parser runs.
      inFlight.catch(() => undefined);
    });
  } finally {
    // Also when reading fails: the caller discards what was sent, once it has landed.
    await inFlight.catch(() => undefined);
  }
  await inFlight;
  const { rows, badRows, errors } = summary;
  if (badRows > 0) {
    const counted =
      badRows === MAX_REPORTED_BAD_ROWS
        ? `${badRows} bad rows (stopped reading there)`
        : `${badRows} bad row${badRows === 1 ? '' : 's'}`;
    throw new AppError('ERR_IMPORT_BAD_ROWS', `${counted}; nothing was imported`, { errors });
  }
  if (rows === 0) {
    throw new AppError('ERR_IMPORT_NO_ROWS', 'the file has no user rows; nothing was imported');
  }
  return rows;
}
