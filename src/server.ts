import type { FastifyInstance } from 'fastify';
import { pino, type Logger } from 'pino';
import { buildApp } from './app.js';
import type { Config } from './config/config.js';
import { migrateToLatest } from './db/migrate-to-latest.js';
import { openDatabase } from './db/open-database.js';
import { AppError } from './errors.js';
import { fileImportSource, formatOfFileName } from './importer/import-source.js';
import { importUsers } from './importer/import-users.js';

export interface RunningServer {
  app: FastifyInstance;
  /** e.g. http://127.0.0.1:8888 */
  url: string;
  /** Stops accepting, lets in-flight requests finish, closes idle connections and the database. */
  close(): Promise<void>;
}

/** JSON lines on stdout; secrets are redacted even if a header is ever logged. */
export function createLogger(config: Config): Logger {
  return pino({
    level: config.logLevel,
    base: { server: config.serverName },
    redact: ['req.headers.authorization', 'headers.authorization'],
  });
}

/**
 * Opens and migrates the database, runs the start-up import (IMPORT_ON_START), and listens.
 * A bad data file stops the start: serving an empty directory would hide the problem.
 */
export async function startServer(config: Config, logger: Logger): Promise<RunningServer> {
  const db = openDatabase(config.database, logger);
  try {
    if (config.migrateOnStart) {
      const applied = await migrateToLatest(db);
      if (applied.length > 0) logger.info({ migrations: applied }, 'database migrated');
    }
    if (config.importOnStart === 'if-empty') await importDataFileIfEmpty(config, db, logger);
  } catch (error) {
    await db.close();
    throw error;
  }

  const app = buildApp({ config, db, logger });
  app.addHook('onClose', async () => {
    await db.close();
  });
  try {
    await app.listen({ port: config.port, host: config.host });
  } catch (error) {
    await app.close();
    throw error;
  }
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : config.port;
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  return {
    app,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    close: () => app.close(),
  };
}

async function importDataFileIfEmpty(
  config: Config,
  db: Parameters<typeof importUsers>[0],
  logger: Logger,
): Promise<void> {
  const format = formatOfFileName(config.dataFile) ?? 'csv';
  const source = fileImportSource(config.dataFile, format, 'ERR_IMPORT_DATA_FILE_MISSING');
  try {
    const result = await importUsers(db, source, 'if-empty');
    if (result.status === 'imported') {
      logger.info({ rows: result.rows, file: config.dataFile }, 'imported the data file');
    } else {
      logger.info({ rows: result.rows }, 'users table not empty; start-up import skipped');
    }
  } catch (error) {
    if (error instanceof AppError && error.code === 'ERR_IMPORT_DATA_FILE_MISSING') {
      logger.warn({ file: config.dataFile }, 'data file not found; starting with an empty table');
      return;
    }
    throw error;
  }
}
