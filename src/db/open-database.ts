import type { DatabaseConnection } from '../config/config.js';
import type { Database } from './database.js';
import { openSqliteDatabase } from './dialects/sqlite.js';

/** Opens the configured database. Call `migrateToLatest` before using it. */
export function openDatabase(connection: DatabaseConnection): Database {
  return openSqliteDatabase(connection.path);
}
