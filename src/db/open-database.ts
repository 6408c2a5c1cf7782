import type { DatabaseConnection } from '../config/config.js';
import type { Database } from './database.js';
import type { DatabaseObserver } from './database-observer.js';
import { openMysqlDatabase, type DatabaseLogger } from './dialects/mysql.js';
import { openSqliteDatabase } from './dialects/sqlite.js';

/**
 * Opens the configured database. Call `migrateToLatest` before using it. The observer hears of
 * every query (duration, failures) and replica check: the server passes its metrics, one-shot
 * commands nothing. The logger hears of replicas leaving and rejoining the read rotation.
 */
export function openDatabase(
  connection: DatabaseConnection,
  options: { observer?: DatabaseObserver; logger?: DatabaseLogger } = {},
): Database {
  switch (connection.dialect) {
    case 'sqlite':
      return openSqliteDatabase(connection, options.observer);
    case 'mysql':
      return openMysqlDatabase(connection, options);
  }
}
