import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { Kysely, SqliteDialect, sql, type LogEvent } from 'kysely';
import type { Database, DatabaseSchema } from '../database.js';
import { IGNORE_DATABASE_EVENTS, type DatabaseObserver } from '../database-observer.js';

/** How long a connection waits for another process's write lock before failing with SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 5000;

/** Rows handed to one synchronous insert loop: long enough to amortise, short enough to yield. */
const MAX_INSERT_ROWS = 5000;

/**
 * Opens the SQLite file with one connection for writes and one for reads. WAL mode lets the
 * reader see the last committed data while a write transaction is open. Both connections are
 * the `primary` target for the observer (SQLite has no replicas).
 */
export function openSqliteDatabase(
  path: string,
  observer: DatabaseObserver = IGNORE_DATABASE_EVENTS,
): Database {
  mkdirSync(dirname(path), { recursive: true });
  const writer = new SqliteDatabase(path, { timeout: BUSY_TIMEOUT_MS });
  writer.pragma('journal_mode = WAL');
  // NORMAL is durable across application crashes in WAL mode; only an OS crash can lose the
  // last transactions, never corrupt the file.
  writer.pragma('synchronous = NORMAL');
  const reader = new SqliteDatabase(path, { timeout: BUSY_TIMEOUT_MS });
  reader.pragma('query_only = ON');

  const observe = (operation: 'read' | 'write') => (event: LogEvent) => {
    observer.queryFinished('primary', operation, event.queryDurationMillis / 1000);
    if (event.level === 'error') observer.queryFailed('primary');
  };
  const write = new Kysely<DatabaseSchema>({
    dialect: new SqliteDialect({ database: writer }),
    log: observe('write'),
  });
  const read = new Kysely<DatabaseSchema>({
    dialect: new SqliteDialect({ database: reader }),
    log: observe('read'),
  });
  // One prepared single-row INSERT, reused for every row: better-sqlite3 runs it synchronously
  // on the write connection, inside the transaction Kysely holds open there. Prepared on first
  // use, because the table exists only once migrations have run.
  let insert: SqliteDatabase.Statement<[string, string, string, string, string]> | undefined;
  let snapshots = 0;
  return {
    dialect: 'sqlite',
    read: (query) => query(read),
    // A SQLite connection runs one statement at a time: a stream on the shared read connection
    // would hold every other read (health checks included) until it ends. Opening a connection
    // costs well under a millisecond; it is closed however the query ends.
    async readSnapshot(query) {
      const connection = new SqliteDatabase(path, { readonly: true, timeout: BUSY_TIMEOUT_MS });
      const snapshot = new Kysely<DatabaseSchema>({
        dialect: new SqliteDialect({ database: connection }),
        log: observe('read'),
      });
      snapshots += 1;
      try {
        return await snapshot.transaction().execute((trx) => query(trx));
      } finally {
        snapshots -= 1;
        await snapshot.destroy();
      }
    },
    activeSnapshots: () => snapshots,
    write,
    maxInsertRows: MAX_INSERT_ROWS,
    insertUsers(trx, users) {
      if (!trx.isTransaction) throw new Error('insertUsers must run inside a write transaction');
      insert ??= writer.prepare(
        'INSERT INTO users (name, street, city, state, user_date) VALUES (?, ?, ?, ?, ?)',
      );
      for (const user of users)
        insert.run(user.name, user.street, user.city, user.state, user.userDate);
      return Promise.resolve();
    },
    async prepareBulkLoad(trx) {
      // Read from the schema, not listed here: an index a later migration adds comes along.
      const { rows } = await sql<{ name: string; sql: string }>`
        select name, sql from sqlite_master
        where type = 'index' and tbl_name = 'users' and sql is not null`.execute(trx);
      for (const index of rows) await sql`drop index ${sql.id(index.name)}`.execute(trx);
      return async () => {
        for (const index of rows) await sql.raw(index.sql).execute(trx);
      };
    },
    waitForReplicas: () => Promise.resolve(),
    replicaStates: () => [],
    primaryState: () => ({ healthy: true, reason: undefined, probedAt: null }),
    async close() {
      await Promise.all([read.destroy(), write.destroy()]);
    },
  };
}
