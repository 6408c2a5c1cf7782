import type { DatabaseConnection } from '../config/config.js';
import type { Database } from './database.js';
import type { DatabaseObserver } from './database-observer.js';
import { openSqliteDatabase } from './dialects/sqlite.js';

/**
 * Opens the configured database. Call `migrateToLatest` before using it. The observer hears of
 * every query (duration, failures): the server passes its metrics, one-shot commands nothing.
 */
export function openDatabase(
  connection: DatabaseConnection,
  observer?: DatabaseObserver,
): Database {
  return openSqliteDatabase(connection.path, observer);
}
