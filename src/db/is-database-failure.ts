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
