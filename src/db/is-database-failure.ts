import SqliteDatabase from 'better-sqlite3';

/**
 * True when an error came from the database driver (the database is unreachable, locked,
 * corrupt, or its schema is missing) rather than from our own code, so callers can answer 503.
 */
export function isDatabaseFailure(error: unknown): boolean {
  if (error instanceof SqliteDatabase.SqliteError) return true;
  // Kysely's message once the connection pool has been closed (shutdown in progress).
  return error instanceof Error && /driver has already been destroyed/.test(error.message);
}
