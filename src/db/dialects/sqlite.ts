import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { Kysely, SqliteDialect, sql, type LogEvent } from 'kysely';
import { beginWriteTransaction } from '../begin-write-transaction.js';
import type { Database, DatabaseExecutor, DatabaseSchema, UsersTableName } from '../database.js';
import type { User } from '../../users/user.js';
import type { SqliteConnection } from '../../config/config.js';
import { AppError } from '../../errors.js';
import { IGNORE_DATABASE_EVENTS, type DatabaseObserver } from '../database-observer.js';
import { createStreamSlots } from '../stream-slots.js';
import { countUsers } from '../users-repository.js';
import { createCorruptionLatch, type SqliteLogger } from './sqlite-corruption-latch.js';
import { withCachedStatements } from './sqlite-statement-cache.js';
import {
  createUsersIndexes,
  createUsersTable,
  dropUsersTableIfExists,
  renameUsersTable,
  usersTableExists,
} from '../users-staging-repository.js';

/** How long a connection waits for another process's write lock before failing with SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 5000;

/** Rows handed to one synchronous insert loop: long enough to amortise, short enough to yield. */
const MAX_INSERT_ROWS = 5000;

/** How often a file latched as corrupt is checked again (PRAGMA quick_check, in a worker). */
const CORRUPTION_RECHECK_MS = 30_000;

export interface SqliteOptions {
  /** Create the file (and its folder) if missing; otherwise a missing file is ERR_DB_NOT_FOUND. */
  create: boolean;
  observer?: DatabaseObserver | undefined;
  /** Hears the corruption latch close and open. */
  logger?: SqliteLogger | undefined;
  /** Tests shorten CORRUPTION_RECHECK_MS. */
  corruptionRecheckMs?: number | undefined;
}

/**
 * Opens the SQLite file with one connection for writes and one for reads. WAL mode lets the
 * reader see the last committed data while a write transaction is open. Both connections are
 * the `primary` target for the observer (SQLite has no replicas).
 */
export function openSqliteDatabase(connection: SqliteConnection, options: SqliteOptions): Database {
  const { path } = connection;
  const observer = options.observer ?? IGNORE_DATABASE_EVENTS;
  // Each stream holds a connection and a read transaction of its own: bounded, because open
  // readers keep the WAL from being checkpointed back into the file.
  const streams = createStreamSlots(connection.maxConcurrentStreams, observer);
  if (options.create) mkdirSync(dirname(path), { recursive: true });
  else if (!existsSync(path)) {
    throw new AppError('ERR_DB_NOT_FOUND', `database not found: ${path}; nothing was created`);
  }
  // fileMustExist as well: the file may go between the check and the open.
  const writer = new SqliteDatabase(path, {
    timeout: BUSY_TIMEOUT_MS,
    fileMustExist: !options.create,
  });
  writer.pragma('journal_mode = WAL');
  // NORMAL is durable across application crashes in WAL mode; only an OS crash can lose the
  // last transactions, never corrupt the file.
  writer.pragma('synchronous = NORMAL');
  // A helper thread for large sorts: building the four users indexes after a 1,000,000-row
  // load took ~1.75 s instead of ~1.95 s here. Only this connection's big sorts use it.
  writer.pragma('threads = 2');
  const reader = new SqliteDatabase(path, { timeout: BUSY_TIMEOUT_MS });
  reader.pragma('query_only = ON');

  const corruption = createCorruptionLatch({
    path,
    recheckMs: options.corruptionRecheckMs ?? CORRUPTION_RECHECK_MS,
    logger: options.logger,
    // Both connections may still hold the damaged pages in their caches.
    beforeReady: () => {
      reader.pragma('shrink_memory');
      writer.pragma('shrink_memory');
      dropIdleSnapshot()?.catch(() => undefined); // closing a connection to a damaged file
    },
  });
  const observe = (operation: 'read' | 'write') => (event: LogEvent) => {
    observer.queryFinished('primary', operation, event.queryDurationMillis / 1000);
    if (event.level === 'error') {
      observer.queryFailed('primary');
      corruption.observe(event.error);
    }
  };
  const write = new Kysely<DatabaseSchema>({
    dialect: new SqliteDialect({ database: withCachedStatements(writer) }),
    log: observe('write'),
  });
  const read = new Kysely<DatabaseSchema>({
    dialect: new SqliteDialect({ database: withCachedStatements(reader) }),
    log: observe('read'),
  });
  // Prepared INSERTs, reused for every batch: better-sqlite3 runs them synchronously on the
  // write connection, inside the transaction Kysely holds open there. Prepared on first use,
  // because the table exists only once migrations have run.
  let insert: ((users: readonly User[]) => void) | undefined;
  let snapshots = 0;
  let idleSnapshot: Kysely<DatabaseSchema> | undefined;
  let closing = false;
  const openSnapshotConnection = () =>
    new Kysely<DatabaseSchema>({
      dialect: new SqliteDialect({
        database: withCachedStatements(
          new SqliteDatabase(path, {
            readonly: true,
            fileMustExist: true,
            timeout: BUSY_TIMEOUT_MS,
          }),
        ),
      }),
      log: observe('read'),
    });
  /** Closes the kept snapshot connection (closing; a file found damaged). */
  const dropIdleSnapshot = () => {
    const idle = idleSnapshot;
    idleSnapshot = undefined;
    return idle?.destroy();
  };
  const database: Database = {
    dialect: 'sqlite',
    read: (query) => query(read),
    activeSnapshots: () => snapshots,
    write,
    maxInsertRows: MAX_INSERT_ROWS,
    insertUsers(trx, users) {
      if (!trx.isTransaction) throw new Error('insertUsers must run inside a write transaction');
      insert ??= rowInserter(writer, 'users');
      insert(users);
      return Promise.resolve();
    },
    async readSnapshot(readInSnapshot) {
      // Its own connection: a transaction held on the shared read connection would make every
      // `/api` read queue behind the backup. WAL gives this one a fixed snapshot from its first
      // read until the transaction ends, while the writer goes on committing. One such
      // connection is kept between snapshots: a single-user write builds a body version in one,
      // and opening a connection per build was a few percent of the write (profiled).
      const snapshot = idleSnapshot ?? openSnapshotConnection();
      idleSnapshot = undefined;
      snapshots += 1;
      let reusable = true;
      try {
        return await snapshot.transaction().execute((trx) => readInSnapshot(trx, 'primary'));
      } catch (error) {
        reusable = false; // whatever went wrong, the next snapshot starts on a fresh connection
        throw error;
      } finally {
        snapshots -= 1;
        if (reusable && !closing && idleSnapshot === undefined) idleSnapshot = snapshot;
        else await snapshot.destroy();
      }
    },
    streamSnapshot: (read) => streams.run(() => database.readSnapshot(read)),
    // SQLite's write transactions take turns on the file's lock: the write connection is the lock.
    withWriteLock: (write) => write(database.write),
    async replaceUsersTable(load, { ifEmpty, keepPrevious }) {
      // One write transaction from the emptiness check to the swap: readers (WAL) keep seeing
      // the old table until the commit, and any failure rolls back the staging table with it.
      const trx = await beginWriteTransaction(database, database.write, { newUsersTable: true });
      try {
        if (ifEmpty) {
          const rows = await countUsers(trx);
          if (rows > 0) {
            await trx.rollback().execute();
            return { replaced: false, rows };
          }
        }
        await dropUsersTableIfExists(trx, 'users_staging');
        await createUsersTable(trx, 'users_staging');
        const stage = rowInserter(writer, 'users_staging');
        await load((users) => {
          stage(users);
          return Promise.resolve();
        });
        if (keepPrevious) {
          await dropUsersTableIfExists(trx, 'users_prev');
          if (await usersTableExists(trx, 'users')) {
            await renameUsersTable(trx, 'users', 'users_prev');
            // Index names are database-wide and the staged table takes the live ones: the kept
            // table keeps its rows, not its indexes (docs/design-notes.md, the staged swap).
            await dropSecondaryIndexes(trx, 'users_prev');
          }
        } else {
          await dropUsersTableIfExists(trx, 'users');
        }
        await createUsersIndexes(trx, 'users_staging');
        await renameUsersTable(trx, 'users_staging', 'users');
        await trx.commit().execute();
        return { replaced: true };
      } catch (error) {
        await trx
          .rollback()
          .execute()
          .catch(() => undefined); // the error that stopped the replace is the one to report
        throw error;
      }
    },
    waitForReplicas: () => Promise.resolve(),
    replicaStates: () => [],
    primaryState: () => ({ healthy: true, reason: undefined, schemaCurrent: true, probedAt: null }),
    corruption: () => corruption.reason(),
    probeServers: () => Promise.resolve(),
    async close() {
      closing = true;
      await corruption.close();
      // The read-only snapshot connection first: the last connection to close checkpoints the
      // WAL and removes it and the -shm file, which a read-only one cannot do.
      await dropIdleSnapshot();
      await Promise.all([read.destroy(), write.destroy()]);
    },
  };
  return database;
}

/** Drops the indexes `table`'s CREATE INDEX statements made (not its primary key). */
async function dropSecondaryIndexes(trx: DatabaseExecutor, table: UsersTableName): Promise<void> {
  const { rows } = await sql<{ name: string }>`
    select name from pragma_index_list(${table}) where origin = 'c'`.execute(trx);
  for (const { name } of rows) await trx.schema.dropIndex(name).execute();
}

/** Rows per INSERT statement: one call into SQLite per 50 rows, not per row (1M rows: ~1.1 s, not ~1.5 s). */
const ROWS_PER_STATEMENT = 50;

/** Appends users to `table` on `connection`, in order, with prepared multi-row INSERTs. */
function rowInserter(
  connection: SqliteDatabase.Database,
  table: UsersTableName,
): (users: readonly User[]) => void {
  const insertInto = (rows: number) =>
    connection.prepare<[string[]]>(
      `INSERT INTO ${table} (name, street, city, state, user_date) VALUES ${Array<string>(rows)
        .fill('(?, ?, ?, ?, ?)')
        .join(', ')}`,
    );
  const many = insertInto(ROWS_PER_STATEMENT);
  const one = insertInto(1);
  const parameters = new Array<string>(ROWS_PER_STATEMENT * 5);
  return (users) => {
    let index = 0;
    for (; index + ROWS_PER_STATEMENT <= users.length; index += ROWS_PER_STATEMENT) {
      for (let row = 0; row < ROWS_PER_STATEMENT; row += 1) {
        const user = users[index + row]!;
        const at = row * 5;
        parameters[at] = user.name;
        parameters[at + 1] = user.street;
        parameters[at + 2] = user.city;
        parameters[at + 3] = user.state;
        parameters[at + 4] = user.userDate;
      }
      many.run(parameters);
    }
    for (; index < users.length; index += 1) {
      const user = users[index]!;
      one.run([user.name, user.street, user.city, user.state, user.userDate]);
    }
  };
}
