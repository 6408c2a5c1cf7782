import type { TestContext } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp } from '../../src/app.js';
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
  const countUsersRows = () => countUsers(database.db.read);
  const metrics = createMetrics({ countUsersRows, processMetrics: false });
  const clock = { now: TEST_EPOCH_MS };
  const app = buildApp({
    config: database.config,
    db: database.db,
    logger: pino({ level: 'silent' }),
    metrics,
    countUsersRows,
    version: '1.2.3-test',
    now: () => clock.now,
    startedAt: TEST_EPOCH_MS,
  });
  t.after(() => app.close());
  await app.ready();
  return { ...database, app, metrics, clock };
}
