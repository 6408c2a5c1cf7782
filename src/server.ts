import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import { buildApp } from './app.js';
import { readBackupStatus } from './backup/backup-status.js';
import type { Config } from './config/config.js';
import type { Database } from './db/database.js';
import { isConnectionFailure } from './db/is-database-failure.js';
import { migrateToLatest } from './db/migrate-to-latest.js';
import { describeError } from './db/topology-monitor.js';
import { openDatabase } from './db/open-database.js';
import { countUsers } from './db/users-repository.js';
import { AppError } from './errors.js';
import { pinNextTickShape } from './http/pin-next-tick-shape.js';
import { removeStaleUploadSpools } from './http/spool-upload.js';
import { fileImportSource, formatOfFileName } from './importer/import-source.js';
import { importUsers } from './importer/import-users.js';
import { cacheReader } from './metrics/cache-reader.js';
import { createMetrics, type Metrics } from './metrics/create-metrics.js';

/**
 * How old a users row count may be when `/metrics` or the health view reports it. A scrape
 * every 15 s then costs at most one COUNT(*) every 15 s, however many scrapers there are.
 */
export const USERS_ROWS_MAX_AGE_MS = 15_000;

/** The version in package.json (one folder above src/ and dist/). */
export const PACKAGE_VERSION = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  }
).version;

export interface RunningServer {
  app: FastifyInstance;
  /** e.g. http://127.0.0.1:8888 */
  url: string;
  /**
   * Graceful shutdown: readiness turns 503 `draining` for SHUTDOWN_DRAIN_MS while requests are
   * still served (the balancer moves traffic away), then the server stops accepting, closes
   * idle keep-alive connections, lets in-flight requests finish and closes the database. What
   * is still running when SHUTDOWN_TIMEOUT_MS is up is cut. Resolves once everything is closed.
   */
  shutdown(): Promise<void>;
}

/**
 * Opens and migrates the database, runs the start-up import (IMPORT_ON_START), and listens.
 * A bad data file stops the start: serving an empty directory would hide the problem.
 */
export async function startServer(
  config: Config,
  logger: Logger,
  clock: { now: () => number } = Date,
): Promise<RunningServer> {
  const startedAt = clock.now();
  pinNextTickShape();
  const spools = await removeStaleUploadSpools(logger);
  if (spools.length > 0) logger.info({ folders: spools }, 'removed left-over upload spool folders');
  // The metrics observe the database and the row gauge reads it: `countRows` is defined
  // below and called only on a scrape, after this function returned.
  const metrics = createMetrics({
    countUsersRows: () => countRows(),
    lastBackupSuccess: () => readBackupStatus(config.backupDir),
    replicaMaxLagSeconds:
      config.database.dialect === 'mysql' && config.database.replicas.length > 0
        ? config.database.maxReplicaLagSeconds
        : undefined,
    probesPrimary: config.database.dialect === 'mysql',
  });
  const db = openDatabase(config.database, { create: true, observer: metrics.db, logger });
  const countRows = cacheReader(() => db.read(countUsers), {
    maxAgeMs: USERS_ROWS_MAX_AGE_MS,
    now: clock.now,
  });
  const startupSteps = async () => {
    if (config.migrateOnStart) {
      const applied = await migrateToLatest(db);
      if (applied.length > 0) logger.info({ migrations: applied }, 'database migrated');
    }
    if (config.importOnStart === 'if-empty') {
      await importDataFileIfEmpty(config, db, logger, metrics);
    }
  };
  let startup: StartupSteps = { state: () => undefined, stop: () => Promise.resolve() };
  // Reads can go on from replicas while the primary is down: serve them, and run the steps
  // (never on a replica) once the primary answers.
  const waitForPrimary = (reason: string) => {
    logger.warn(
      { reason },
      'the primary cannot take the start-up steps yet: serving reads from servers with this release schema; migrations and the start-up import wait for it',
    );
    startup = runWhenPrimaryReachable(
      db,
      startupSteps,
      logger,
      config.database.dialect === 'mysql' ? config.database.replicaProbeIntervalMs : 1000,
    );
  };
  try {
    await db.probeServers();
    const primary = db.primaryState();
    if (primary.healthy) await startupSteps();
    else waitForPrimary(primary.reason ?? 'unreachable');
  } catch (error) {
    if (config.database.dialect !== 'mysql' || !waitsForPrimary(error)) {
      await db.close();
      throw error;
    }
    waitForPrimary(error instanceof AppError ? error.message : describeError(error));
  }

  const lifecycle = { draining: false };
  const app = buildApp({
    config,
    db,
    logger,
    metrics,
    countUsersRows: countRows,
    version: PACKAGE_VERSION,
    now: clock.now,
    startedAt,
    lifecycle,
    startupState: startup.state,
  });
  app.addHook('onClose', async () => {
    // An attempt under way (a migration's DDL) finishes before the pools close under it.
    await startup.stop();
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
    async shutdown() {
      lifecycle.draining = true;
      logger.info({ drainMs: config.shutdownDrainMs }, 'draining: healthcheck answers 503');
      const cutStragglers = setTimeout(() => {
        logger.warn('shutdown timeout: cutting the requests still running');
        app.server.closeAllConnections();
      }, config.shutdownTimeoutMs);
      await sleep(config.shutdownDrainMs);
      logger.info('closing: no new connections; finishing in-flight requests');
      await app.close();
      clearTimeout(cutStragglers);
    },
  };
}

/**
 * Whether a start-up step failed for want of the primary (unreachable, or its schema older than
 * this release while MIGRATE_ON_START=false: someone runs `users-api migrate`), so trying again
 * later can succeed.
 */
function waitsForPrimary(error: unknown): boolean {
  return (
    isConnectionFailure(error) ||
    (error instanceof AppError && error.code === 'ERR_DB_PRIMARY_UNAVAILABLE')
  );
}

/** Start-up steps that wait for the primary. */
interface StartupSteps {
  /** What they wait for, or why they failed; undefined once done. */
  state: () => string | undefined;
  /** No more attempts; resolves once one under way has ended. */
  stop: () => Promise<void>;
}

/**
 * Runs `steps` once the topology monitor sees the primary reachable, trying again while it is
 * not. A failure other than an unreachable primary (a bad data file, a failed migration) is
 * logged and reported by `state`, not retried: trying it again would fail the same way.
 */
function runWhenPrimaryReachable(
  db: Database,
  steps: () => Promise<void>,
  logger: Logger,
  intervalMs: number,
): StartupSteps {
  let state: string | undefined = 'migrations and the start-up import wait for the primary';
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
  let running = Promise.resolve();
  const later = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = attempt();
    }, intervalMs);
  };
  const attempt = async () => {
    if (!db.primaryState().healthy) return later();
    try {
      await steps();
      state = undefined;
      logger.info('the primary is reachable: start-up steps done');
    } catch (error) {
      if (waitsForPrimary(error)) return later();
      state = `start-up steps failed: ${describeError(error)}`;
      logger.error({ err: error }, 'start-up steps failed once the primary was reachable');
    }
  };
  later();
  return {
    state: () => state,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}

async function importDataFileIfEmpty(
  config: Config,
  db: Parameters<typeof importUsers>[0],
  logger: Logger,
  metrics: Metrics,
): Promise<void> {
  const format = formatOfFileName(config.dataFile) ?? 'csv';
  const source = fileImportSource(config.dataFile, format, 'ERR_IMPORT_DATA_FILE_MISSING');
  try {
    const result = await importUsers(db, source, 'if-empty', metrics.importFinished);
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
