import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { loadConfig, type Config } from '../../src/config/config.js';
import type { RawEnv } from '../../src/config/env.js';
import type { Database } from '../../src/db/database.js';
import { migrateToLatest } from '../../src/db/migrate-to-latest.js';
import { openDatabase } from '../../src/db/open-database.js';
import { REPO_ROOT } from './paths.js';

export interface TestDatabase {
  db: Database;
  config: Config;
  dir: string;
}

/**
 * A migrated database in a fresh temp folder, with a config built through the real config
 * module (DATA_FILE defaults to the bundled sample). Closed and deleted when the test ends.
 */
export async function createTestDatabase(t: TestContext, env: RawEnv = {}): Promise<TestDatabase> {
  const dir = await mkdtemp(join(tmpdir(), 'users-api-test-'));
  const config = loadConfig(
    {
      DATABASE_URL: `sqlite:${join(dir, 'users.db')}`,
      DATA_FILE: join(REPO_ROOT, 'data/users.csv'),
      SERVER_NAME: 'test-server',
      LOG_LEVEL: 'silent',
      ...env,
    },
    dir,
  );
  const db = openDatabase(config.database, { create: true });
  await migrateToLatest(db);
  t.after(async () => {
    await db.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { db, config, dir };
}
