import SqliteDatabase from 'better-sqlite3';

/** mysql2's codes for a connection that failed, was lost, or timed out. */
const MYSQL_CONNECTION_CODES =
  /^(E[A-Z]+|PROTOCOL_[A-Z_]+|ER_CON_COUNT_ERROR|ER_ACCESS_DENIED_ERROR|ER_SERVER_SHUTDOWN)$/;

/**
 * True when an error came from the database (unreachable, locked, read-only, corrupt, schema
 * missing) rather than from our own code, so callers can answer 503.
 */
export function isDatabaseFailure(error: unknown): boolean {
  if (error instanceof SqliteDatabase.SqliteError) return true;
  if (!(error instanceof Error)) return false;
  const { code, sqlState, fatal } = error as {
    code?: unknown;
    sqlState?: unknown;
    fatal?: unknown;
  };
  // mysql2: server-side errors carry an SQLSTATE; client-side ones a connection error code, or
  // only `fatal` ("Can't add new command when connection is in closed state" after a crash).
  if (typeof sqlState === 'string' || fatal === true) return true;
  if (typeof code === 'string' && MYSQL_CONNECTION_CODES.test(code)) return true;
  // Kysely's message once the connection pool has been closed (shutdown in progress).
  return /driver has already been destroyed/.test(error.message);
}

/** mysql2's codes for a server that cannot be reached or dropped the connection. */
const CONNECTION_CODES =
  /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|EPIPE|PROTOCOL_CONNECTION_LOST|PROTOCOL_SEQUENCE_TIMEOUT|ER_SERVER_SHUTDOWN|ER_CON_COUNT_ERROR)$/;

/**
 * True when `error` (or what it wraps: a failed migration wraps the driver's error) says the
 * MySQL server could not be reached or went away, as opposed to refusing what was asked.
 */
export function isConnectionFailure(error: unknown): boolean {
  for (let current = error; current instanceof Error; current = current.cause) {
    const { code, fatal } = current as { code?: unknown; fatal?: unknown };
    if (typeof code === 'string' && CONNECTION_CODES.test(code)) return true;
    if (fatal === true && typeof (current as { sqlState?: unknown }).sqlState !== 'string') {
      return true;
    }
  }
  return false;
}
