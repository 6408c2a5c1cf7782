import type { TestContext } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp } from '../../src/app.js';
import type { RawEnv } from '../../src/config/env.js';
import { createTestDatabase, type TestDatabase } from './test-database.js';

export interface TestApp extends TestDatabase {
  app: FastifyInstance;
}

/** The real app on a fresh SQLite database, for `inject`; closed when the test ends. */
export async function createTestApp(t: TestContext, env: RawEnv = {}): Promise<TestApp> {
  const database = await createTestDatabase(t, env);
  const app = buildApp({
    config: database.config,
    db: database.db,
    logger: pino({ level: 'silent' }),
  });
  t.after(() => app.close());
  await app.ready();
  return { ...database, app };
}
