import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/config.js';
import type { Database } from '../../src/db/database.js';
import { openDatabase } from '../../src/db/open-database.js';
import {
  countNamed,
  createKeyed,
  drillConcurrentSameKey,
  drillKeyedCreateReplays,
  drillKeyMisuseIsRefused,
  drillReplayFollowsTheUser,
  newKey,
  userNamed,
} from '../helpers/idempotency-drills.js';
import { send, type WriteTarget } from '../helpers/single-user-drills.js';
import { createTestDatabase } from '../helpers/test-database.js';
import { TEST_EPOCH_MS, testAppDependencies } from '../helpers/test-app.js';
import { REPO_ROOT } from '../helpers/paths.js';

const TOKEN = 'idempotency-keys-test-token';
const TTL_SECONDS = 3600;

interface Instance extends WriteTarget {
  db: Database;
}

/** An instance over real HTTP on the SQLite file in `dir`, reading `clock`. */
async function startInstance(
  t: TestContext,
  dir: string,
  name: string,
  clock: { now: number },
): Promise<Instance> {
  const config = loadConfig(
    {
      DATABASE_URL: `sqlite:${join(dir, 'users.db')}`,
      DATA_FILE: join(REPO_ROOT, 'data/users.csv'),
      API_BODY_DIR: join(dir, `pages-${name}`),
      ADMIN_TOKEN: TOKEN,
      API_CACHE_CHECK_MS: '0',
      IDEMPOTENCY_KEY_TTL_SECONDS: String(TTL_SECONDS),
      SERVER_NAME: name,
    },
    dir,
  );
  const db = openDatabase(config.database, { create: true });
  const app = buildApp(testAppDependencies(config, db, () => clock.now));
  closers.get(t)!.push(async () => {
    await app.close();
    await db.close();
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url, token: TOKEN, db };
}

const closers = new WeakMap<TestContext, (() => Promise<void>)[]>();

async function start(t: TestContext): Promise<{
  dir: string;
  a: Instance;
  clock: { now: number };
}> {
  const list: (() => Promise<void>)[] = [];
  closers.set(t, list);
  // Registered before the folder's removal: node:test runs after-hooks in that order.
  t.after(async () => {
    for (const close of list.reverse()) await close();
  });
  const { dir } = await createTestDatabase(t, { ADMIN_TOKEN: TOKEN });
  const clock = { now: TEST_EPOCH_MS };
  return { dir, a: await startInstance(t, dir, 'a', clock), clock };
}

async function recordsOf(db: Database): Promise<{ idem_key: string; created_at_ms: number }[]> {
  return db.write.selectFrom('idempotency_keys').select(['idem_key', 'created_at_ms']).execute();
}

describe('Idempotency-Key on SQLite', () => {
  it('the same key twice: one row, the first answer replayed', async (t) => {
    const { a } = await start(t);
    await drillKeyedCreateReplays(a);
  });

  it('the same key with another request is 422; malformed keys are 400; neither writes', async (t) => {
    const { a } = await start(t);
    await drillKeyMisuseIsRefused(a);
  });

  it('a refused request does not use up its key', async (t) => {
    const { a } = await start(t);
    const key = newKey('refused');
    const name = `Fixed ${Date.now()}`;
    const bad = await createKeyed(a, key, { ...userNamed(name), STATE: 'XX' });
    assert.equal(bad.status, 422);
    assert.equal((bad.body as { code: string }).code, 'ERR_USER_INVALID');
    assert.equal((await createKeyed(a, key, userNamed(name))).status, 201);
    assert.equal(await countNamed(a, name), 1);
  });

  it('requests with one key at once, on one instance and on two: exactly one write', async (t) => {
    const { dir, a, clock } = await start(t);
    await drillConcurrentSameKey([a]);
    await drillConcurrentSameKey([a, await startInstance(t, dir, 'b', clock)]);
  });

  it('a replay shows the user as now; deleted or replaced since, it is 410', async (t) => {
    const { a } = await start(t);
    await drillReplayFollowsTheUser(a);
  });

  it('an append with a key imports once; the retry answers its result', async (t) => {
    const { a } = await start(t);
    const key = newKey('append');
    const name = `Appended ${Date.now()}`;
    const append = () =>
      send(a, 'POST', '/addtosql?mode=append', {
        body: `NAME,STREET,CITY,STATE,USER_DATE\n${name},1 Main St,Albany,NY,01/01/01\n${name},2 Main St,Albany,NY,01/01/01\n`,
        type: 'text/csv',
        headers: { 'idempotency-key': key },
      });
    const first = await append();
    assert.equal(first.status, 200, JSON.stringify(first.body));
    assert.deepEqual(first.body, { status: 'imported', rows: 2 });
    const again = await append();
    assert.equal(again.status, 200);
    assert.deepEqual(again.body, { status: 'imported', rows: 2 });
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    assert.equal(await countNamed(a, name), 2, 'imported once');
    const bad = await send(a, 'POST', '/addtosql?mode=append', {
      body: `NAME,STREET,CITY,STATE,USER_DATE\n${name},1 Main St,Albany,NY,01/01/01\n`,
      type: 'text/csv',
      headers: { 'idempotency-key': '""' },
    });
    assert.equal(bad.status, 400);
    assert.equal(await countNamed(a, name), 2);
  });

  it('keys expire after IDEMPOTENCY_KEY_TTL_SECONDS; the next keyed write deletes them', async (t) => {
    const { a, clock } = await start(t);
    const name = `Expiring ${Date.now()}`;
    const key = newKey('expiring');
    assert.equal((await createKeyed(a, key, userNamed(name))).status, 201);
    clock.now += TTL_SECONDS * 1000 - 1;
    const within = await createKeyed(a, key, userNamed(name));
    assert.equal(within.headers.get('idempotent-replayed'), 'true', 'still within its time');
    assert.equal(await countNamed(a, name), 1);

    clock.now += 1;
    assert.equal((await recordsOf(a.db)).length, 1, 'expired, not yet deleted');
    const other = `Other ${Date.now()}`;
    assert.equal((await createKeyed(a, newKey('other'), userNamed(other))).status, 201);
    const left = await recordsOf(a.db);
    assert.equal(left.length, 1, 'the expired record went with the next keyed write');
    assert.notEqual(left[0]!.idem_key, key.slice(1, -1));

    const reused = await createKeyed(a, key, userNamed(name));
    assert.equal(reused.status, 201);
    assert.equal(reused.headers.get('idempotent-replayed'), null, 'an expired key is new again');
    assert.equal(await countNamed(a, name), 2);
  });
});
