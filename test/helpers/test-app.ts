import type { TestContext } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp, type AppDependencies } from '../../src/app.js';
import type { Config } from '../../src/config/config.js';
import type { Database } from '../../src/db/database.js';
import { countUsers } from '../../src/db/users-repository.js';
import { createMetrics, type Metrics } from '../../src/metrics/create-metrics.js';
import type { RawEnv } from '../../src/config/env.js';
import { createTestDatabase, type TestDatabase } from './test-database.js';

export interface TestApp extends TestDatabase {
  app: FastifyInstance;
  metrics: Metrics;
  /** The clock the app reads: tests move it forward. */
  clock: { now: number };
}

/** Where the test clock starts: 2025-01-01T00:00:00Z. */
export const TEST_EPOCH_MS = Date.UTC(2025, 0, 1);

/**
 * The real app on a fresh SQLite database, for `inject`; closed when the test ends. The row
 * count is not cached, so tests see changes at once; process metrics are left out.
 */
export async function createTestApp(t: TestContext, env: RawEnv = {}): Promise<TestApp> {
  const database = await createTestDatabase(t, env);
  const clock = { now: TEST_EPOCH_MS };
  const deps = testAppDependencies(database.config, database.db, () => clock.now);
  const app = buildApp(deps);
  t.after(() => app.close());
  await app.ready();
  return { ...database, app, metrics: deps.metrics, clock };
}

/** Everything buildApp needs, quiet: silent logs, fresh metrics, an uncached row count. */
export function testAppDependencies(
  config: Config,
  db: Database,
  now: () => number = Date.now,
  metrics?: Metrics,
): AppDependencies {
  const countUsersRows = () => db.read(countUsers);
  return {
    config,
    db,
    logger: pino({ level: 'silent' }),
    metrics: metrics ?? createMetrics({ countUsersRows, processMetrics: false }),
    countUsersRows,
    version: '1.2.3-test',
    now,
    startedAt: now(),
  };
}
