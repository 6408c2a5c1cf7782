import type { DatabaseConnection } from '../config/config.js';
import type { Database } from './database.js';
import { openMysqlDatabase, type DatabaseLogger } from './dialects/mysql.js';
import { openSqliteDatabase } from './dialects/sqlite.js';

/** Opens the configured database. Call `migrateToLatest` before using it. */
export function openDatabase(connection: DatabaseConnection, logger?: DatabaseLogger): Database {
  switch (connection.dialect) {
    case 'sqlite':
      return openSqliteDatabase(connection.path);
    case 'mysql':
      return openMysqlDatabase(connection, logger);
  }
}
