import SqliteDatabase from 'better-sqlite3';

/**
 * Socket errors: from the database driver they mean the server cannot be reached. File-system
 * errnos (EACCES, ENOSPC, ENOTDIR…) are deliberately not here: BACKUP_DIR or the upload spool
 * failing is not the database failing.
 */
const NETWORK_ERROR_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENETRESET',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EAI_FAIL',
  'EADDRNOTAVAIL',
]);

/**
 * MySQL/MariaDB server errors that mean "not now" rather than "not this": the server is going
 * away, full, out of connections or memory, read-only, or a lock or statement timed out. By
 * number (mysql2 names them from MySQL's list only): both servers agree on those below 1900,
 * and the rest are marked as one server's own.
 */
const MYSQL_OUTAGE_ERRNOS = new Set([
  1021, // ER_DISK_FULL
  1037, // ER_OUTOFMEMORY
  1038, // ER_OUT_OF_SORTMEMORY
  1040, // ER_CON_COUNT_ERROR (too many connections)
  1041, // ER_OUT_OF_RESOURCES
  1044, // ER_DBACCESS_DENIED_ERROR (on connect)
  1045, // ER_ACCESS_DENIED_ERROR (on connect)
  1049, // ER_BAD_DB_ERROR (the database is not there)
  1053, // ER_SERVER_SHUTDOWN
  1114, // ER_RECORD_FILE_FULL (table full)
  1129, // ER_HOST_IS_BLOCKED
  1130, // ER_HOST_NOT_PRIVILEGED
  1146, // ER_NO_SUCH_TABLE (schema missing: not migrated, or mid-restore elsewhere)
  1152, // ER_ABORTING_CONNECTION
  1158, // ER_NET_READ_ERROR
  1159, // ER_NET_READ_INTERRUPTED
  1160, // ER_NET_ERROR_ON_WRITE
  1161, // ER_NET_WRITE_INTERRUPTED
  1203, // ER_TOO_MANY_USER_CONNECTIONS
  1205, // ER_LOCK_WAIT_TIMEOUT
  1206, // ER_LOCK_TABLE_FULL
  1213, // ER_LOCK_DEADLOCK
  1226, // ER_USER_LIMIT_REACHED
  1290, // ER_OPTION_PREVENTS_STATEMENT (--read-only)
  1317, // ER_QUERY_INTERRUPTED (KILL QUERY, shutdown)
  1836, // ER_READ_ONLY_MODE
  1927, // MariaDB ER_CONNECTION_KILLED
  1969, // MariaDB ER_STATEMENT_TIMEOUT (max_statement_time)
  3024, // MySQL ER_QUERY_TIMEOUT (max_execution_time)
]);

/** MySQL/MariaDB errors that report damaged table or index files. */
const MYSQL_CORRUPTION_ERRNOS = new Set([
  1034, // ER_NOT_KEYFILE (incorrect key file)
  1194, // ER_CRASHED_ON_USAGE
  1195, // ER_CRASHED_ON_REPAIR
  1712, // ER_INDEX_CORRUPT
]);

/** MySQL/MariaDB errors for a value or row the table refuses, whose SQLSTATE is only HY000. */
const MYSQL_DATA_ERRNOS = new Set([
  1366, // ER_TRUNCATED_WRONG_VALUE_FOR_FIELD ("Incorrect string value")
  1367, // ER_ILLEGAL_VALUE_FOR_TYPE
]);

/** SQLite's primary result codes (the extended code's prefix) for "cannot serve now". */
const SQLITE_OUTAGE_CODES = new Set([
  'SQLITE_BUSY',
  'SQLITE_LOCKED',
  'SQLITE_CANTOPEN',
  'SQLITE_IOERR',
  'SQLITE_READONLY',
  'SQLITE_FULL',
  'SQLITE_NOMEM',
  'SQLITE_PROTOCOL',
  'SQLITE_NOLFS',
  'SQLITE_INTERRUPT',
  'SQLITE_PERM',
  'SQLITE_AUTH',
  'SQLITE_SCHEMA',
]);
const SQLITE_CORRUPTION_CODES = new Set(['SQLITE_CORRUPT', 'SQLITE_NOTADB']);
const SQLITE_DATA_CODES = new Set([
  'SQLITE_CONSTRAINT',
  'SQLITE_MISMATCH',
  'SQLITE_TOOBIG',
  'SQLITE_RANGE',
]);

interface DriverErrorFields {
  code?: unknown;
  errno?: unknown;
  sqlState?: unknown;
  fatal?: unknown;
}

/**
 * True when an error means the database cannot serve now: unreachable, connection lost or
 * refused, timed out, shutting down, out of connections, read-only, locked or busy, out of
 * space, its schema missing, or corrupt. Callers answer 503 (ERR_DB_UNAVAILABLE,
 * ERR_DB_PRIMARY_UNAVAILABLE). Not: a value the database refused (isDatabaseDataError), a
 * file-system error of our own (BACKUP_DIR, the upload spool), or a bug in a query.
 */
export function isDatabaseFailure(error: unknown): boolean {
  if (error instanceof SqliteDatabase.SqliteError) {
    const primary = sqlitePrimaryCode(error);
    if (SQLITE_OUTAGE_CODES.has(primary) || SQLITE_CORRUPTION_CODES.has(primary)) return true;
    // A missing table: not migrated yet, or dropped; nothing a client can fix.
    return primary === 'SQLITE_ERROR' && /^no such table\b/.test(error.message);
  }
  if (!(error instanceof Error)) return false;
  const { code, errno, sqlState, fatal } = error as DriverErrorFields;
  // mysql2 marks every error that broke the connection fatal ("Can't add new command when
  // connection is in closed state" after a crash carries nothing else).
  if (fatal === true) return true;
  if (typeof code === 'string' && (NETWORK_ERROR_CODES.has(code) || code.startsWith('PROTOCOL_'))) {
    return true;
  }
  if (typeof sqlState === 'string') {
    // SQLSTATE classes: 08 connection exception, 28 invalid authorisation, 40 transaction
    // rollback (deadlock), 70100 query interrupted.
    if (/^(08|28|40)/.test(sqlState) || sqlState === '70100') return true;
    if (typeof errno === 'number') {
      return MYSQL_OUTAGE_ERRNOS.has(errno) || MYSQL_CORRUPTION_ERRNOS.has(errno);
    }
    return false;
  }
  // Kysely's message once the connection pool has been closed (shutdown in progress).
  return /driver has already been destroyed/.test(error.message);
}

/**
 * True when `error` (or what it wraps: a failed migration wraps the driver's error) says the
 * MySQL server could not be reached or went away, as opposed to refusing what was asked: the
 * start-up steps wait for the primary on these and give up on anything else.
 */
export function isConnectionFailure(error: unknown): boolean {
  for (let current = error; current instanceof Error; current = current.cause) {
    const { code, errno, sqlState, fatal } = current as DriverErrorFields;
    if (typeof code === 'string' && (NETWORK_ERROR_CODES.has(code) || code.startsWith('PROTOCOL_')))
      return true;
    if (fatal === true && typeof sqlState !== 'string') return true;
    // ER_SERVER_SHUTDOWN, ER_CON_COUNT_ERROR: going away, or no room for us yet.
    if (errno === 1053 || errno === 1040) return true;
  }
  return false;
}

/**
 * True when the database reports damaged data: SQLite's SQLITE_CORRUPT (and its extended
 * codes) or SQLITE_NOTADB, MySQL's crashed or corrupt table and index errors. Such an error is
 * also an isDatabaseFailure (503), but retrying will not help: a cheap probe cannot find corrupt
 * pages, so readiness must remember a read that did.
 */
export function isDatabaseCorruption(error: unknown): boolean {
  if (error instanceof SqliteDatabase.SqliteError) {
    return SQLITE_CORRUPTION_CODES.has(sqlitePrimaryCode(error));
  }
  if (!(error instanceof Error)) return false;
  const { errno, sqlState } = error as DriverErrorFields;
  return (
    typeof sqlState === 'string' && typeof errno === 'number' && MYSQL_CORRUPTION_ERRNOS.has(errno)
  );
}

/**
 * True when the database refused a value or a row: too long for its column, out of range, not
 * valid text, NULL where none may be, a duplicate key (SQLSTATE classes 22 and 23, SQLite's
 * SQLITE_CONSTRAINT and kin). The database is fine; what we sent it was not.
 */
export function isDatabaseDataError(error: unknown): boolean {
  if (error instanceof SqliteDatabase.SqliteError) {
    return SQLITE_DATA_CODES.has(sqlitePrimaryCode(error));
  }
  if (!(error instanceof Error)) return false;
  const { errno, sqlState } = error as DriverErrorFields;
  if (typeof sqlState !== 'string') return false;
  return /^(22|23)/.test(sqlState) || (typeof errno === 'number' && MYSQL_DATA_ERRNOS.has(errno));
}

/** `SQLITE_IOERR_SHORT_READ` → `SQLITE_IOERR`: the extended codes share their primary's meaning. */
function sqlitePrimaryCode(error: InstanceType<typeof SqliteDatabase.SqliteError>): string {
  return /^SQLITE_[A-Z]+/.exec(error.code)?.[0] ?? error.code;
}
