import type { DatabaseConnection } from '../config/config.js';
import type { Database } from './database.js';
import type { DatabaseObserver } from './database-observer.js';
import { openMysqlDatabase, type DatabaseLogger } from './dialects/mysql.js';
import { openSqliteDatabase } from './dialects/sqlite.js';
import type { SqliteLogger } from './dialects/sqlite-corruption-latch.js';

/**
 * Opens the configured database. Call `migrateToLatest` before using it. `create`: SQLite
 * creates a missing file (and its folder) only when true, else fails with ERR_DB_NOT_FOUND
 * (MySQL never creates a database: the server reports a missing one). The observer hears of
 * every query (duration, failures) and replica check: the server passes its metrics, one-shot
 * commands nothing. The logger hears of replicas leaving and rejoining the read rotation, and of
 * a SQLite file found corrupt and found sound again.
 */
export function openDatabase(
  connection: DatabaseConnection,
  options: {
    create: boolean;
    observer?: DatabaseObserver;
    logger?: DatabaseLogger & SqliteLogger;
    /** SQLite: how often a file latched as corrupt is checked again (tests shorten it). */
    corruptionRecheckMs?: number;
  },
): Database {
  switch (connection.dialect) {
    case 'sqlite':
      return openSqliteDatabase(connection, options);
    case 'mysql':
      return openMysqlDatabase(connection, options);
  }
}
