import { describe, it, type TestContext } from 'node:test';
import { buildApp } from '../../src/app.js';
import type { RawEnv } from '../../src/config/env.js';
import {
  idleStreamDrill,
  loadGeneratedUsers,
  stalledReadersDrill,
} from '../helpers/slow-readers.js';
import { testAppDependencies } from '../helpers/test-app.js';
import { createTestDatabase } from '../helpers/test-database.js';

/** Enough users that one body outgrows every socket buffer on the way to a client. */
const ROWS = 200_000;

async function startStreamingApp(t: TestContext, env: RawEnv) {
  const { db, config } = await createTestDatabase(t, env);
  await loadGeneratedUsers(db, ROWS);
  const app = buildApp(testAppDependencies(config, db));
  t.after(() => app.close());
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return {
    url,
    maxStreams: config.database.maxConcurrentStreams,
    activeStreams: () => db.activeSnapshots(),
  };
}

describe('clients that stop reading a streamed body (SQLite)', () => {
  it('hold at most MAX_CONCURRENT_STREAMS snapshots; reads and health checks go on', async (t) => {
    await stalledReadersDrill(
      await startStreamingApp(t, { MAX_CONCURRENT_STREAMS: '3', STREAM_IDLE_TIMEOUT_MS: '600000' }),
    );
  });

  it('are cut after STREAM_IDLE_TIMEOUT_MS and release their snapshot', async (t) => {
    await idleStreamDrill(
      await startStreamingApp(t, { MAX_CONCURRENT_STREAMS: '3', STREAM_IDLE_TIMEOUT_MS: '500' }),
      { idleTimeoutMs: 500 },
    );
  });
});
