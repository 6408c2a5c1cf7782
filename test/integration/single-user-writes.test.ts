import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, it, type TestContext } from 'node:test';
import { pino } from 'pino';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/config.js';
import { openDatabase } from '../../src/db/open-database.js';
import { eventually } from '../helpers/mariadb.js';
import { createTestDatabase } from '../helpers/test-database.js';
import { testAppDependencies } from '../helpers/test-app.js';
import { REPO_ROOT } from '../helpers/paths.js';
import {
  createUser,
  drillBadWrites,
  drillConcurrentWritersOneWins,
  drillEtagsOutliveNoReplace,
  drillRandomWritesMatchAFullBuild,
  drillUserLifecycle,
  send,
  type WriteTarget,
} from '../helpers/single-user-drills.js';

const TOKEN = 'single-user-writes-test-token';

/** Page files only, the version checked on every request: what the write path builds on. */
const PAGES_ONLY = { ADMIN_TOKEN: TOKEN, API_CACHE_MAX_BYTES: '0', API_CACHE_CHECK_MS: '0' };

interface Instance extends WriteTarget {
  logs: Record<string, unknown>[];
}

/**
 * An instance over real HTTP on the SQLite file in `dir` (a second one on the same file is
 * another instance: its own connections, cache and page folder), logging to `logs`.
 */
async function startInstance(
  t: TestContext,
  dir: string,
  name: string,
  env: Record<string, string> = PAGES_ONLY,
): Promise<Instance> {
  const config = loadConfig(
    {
      DATABASE_URL: `sqlite:${join(dir, 'users.db')}`,
      DATA_FILE: join(REPO_ROOT, 'data/users.csv'),
      API_BODY_DIR: join(dir, `pages-${name}`),
      SERVER_NAME: name,
      ...env,
    },
    dir,
  );
  const db = openDatabase(config.database, { create: true });
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line !== '') logs.push(JSON.parse(line) as Record<string, unknown>);
      }
      callback();
    },
  });
  const app = buildApp({
    ...testAppDependencies(config, db),
    logger: pino({ level: 'debug' }, sink),
  });
  instancesOf(t).push(async () => {
    await app.close();
    await db.close();
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { url, token: TOKEN, logs };
}

/** Each test's instances, closed before its folder is removed (writes build in the background). */
const instances = new WeakMap<TestContext, (() => Promise<void>)[]>();
function instancesOf(t: TestContext): (() => Promise<void>)[] {
  const closers = instances.get(t);
  if (closers === undefined) throw new Error('start the test with startOnFreshFile');
  return closers;
}

async function startOnFreshFile(t: TestContext): Promise<{ dir: string; a: Instance }> {
  const closers: (() => Promise<void>)[] = [];
  instances.set(t, closers);
  // Registered before the folder's removal: node:test runs after-hooks in that order.
  t.after(async () => {
    for (const close of closers.reverse()) await close();
  });
  const { dir } = await createTestDatabase(t, PAGES_ONLY);
  return { dir, a: await startInstance(t, dir, 'a') };
}

describe('single-user writes on SQLite', () => {
  it('create, read with ETag, merge patch, replace and delete one user', async (t) => {
    const { a } = await startOnFreshFile(t);
    await drillUserLifecycle(a);
  });

  it('refuses bad writes with their own status and changes nothing', async (t) => {
    const { a } = await startOnFreshFile(t);
    await drillBadWrites(a);
  });

  it("an ETag from before a replace import never matches the new table's user", async (t) => {
    const { a } = await startOnFreshFile(t);
    await drillEtagsOutliveNoReplace(a);
  });

  it('two instances writing the same user at once: one wins, the other gets 412', async (t) => {
    const { dir, a } = await startOnFreshFile(t);
    await drillConcurrentWritersOneWins(a, await startInstance(t, dir, 'b'));
  });

  it('a write re-renders one page, and the body equals a full build', async (t) => {
    const { dir, a } = await startOnFreshFile(t);
    // 5,000 users: three pages of 2,000 ids.
    const csv = ['NAME,STREET,CITY,STATE,USER_DATE'];
    for (let index = 0; index < 5000; index += 1) {
      csv.push(`User ${index},${index} Main St,Albany,NY,01/01/01`);
    }
    const loaded = await send(a, 'POST', '/addtosql?mode=replace', {
      body: `${csv.join('\n')}\n`,
      type: 'text/csv',
    });
    assert.equal(loaded.status, 200);
    await send(a, 'GET', '/api', { auth: false });
    const builds = () =>
      a.logs.flatMap((line) => (line.apiBody === undefined ? [] : [line.apiBody])) as {
        pages: number;
        renderedPages: number;
      }[];
    // Versions are built in the background: a response may be streamed before the build is done.
    await eventually(() => builds().length > 0, 'the imported version is built');
    assert.equal(builds().at(-1)?.renderedPages, 3, 'the import renders every page');
    const buildsBeforeWrite = builds().length;
    const patched = await send(a, 'PATCH', '/api/users/2500', {
      body: { NAME: 'Changed In Page Two' },
      type: 'application/merge-patch+json',
      headers: { 'if-match': '*' },
    });
    assert.equal(patched.status, 200);
    const users = (await send(a, 'GET', '/api', { auth: false })).body as { NAME: string }[];
    assert.equal(users[2499]?.NAME, 'Changed In Page Two');
    await eventually(() => builds().length > buildsBeforeWrite, 'the written version is built');
    assert.deepEqual(builds().at(-1), { ...builds().at(-1), pages: 3, renderedPages: 1 });

    // Audit: who, what, before and after, with the request's id; never the token.
    const audit = a.logs.find((line) => line.audit !== undefined);
    assert.ok(audit, 'the write is in the audit log');
    assert.equal(typeof audit.reqId, 'string');
    assert.deepEqual(
      { ...(audit.audit as object), dataVersion: 0 },
      {
        action: 'update',
        caller: 'admin',
        id: 2500,
        dataVersion: 0,
        before: {
          ID: 2500,
          NAME: 'User 2499',
          STREET: '2499 Main St',
          CITY: 'Albany',
          STATE: 'NY',
          USER_DATE: '01/01/01',
        },
        after: {
          ID: 2500,
          NAME: 'Changed In Page Two',
          STREET: '2499 Main St',
          CITY: 'Albany',
          STATE: 'NY',
          USER_DATE: '01/01/01',
        },
      },
    );
    assert.ok(!JSON.stringify(a.logs).includes(TOKEN), 'no token in any log line');

    const inMemory = await startInstance(t, dir, 'full', {
      ADMIN_TOKEN: TOKEN,
      API_CACHE_MAX_BYTES: String(64 * 1024 * 1024),
    });
    const fullBuild = async () =>
      Buffer.from(
        await (
          await fetch(`${inMemory.url}/api`, { headers: { 'accept-encoding': 'identity' } })
        ).arrayBuffer(),
      );
    await drillRandomWritesMatchAFullBuild(a, fullBuild, 60);
    const ids = new Set<number>();
    for (let index = 0; index < 3; index += 1) ids.add((await createUser(a)).id);
    assert.equal(ids.size, 3, 'ids are new for every create');
  });
});
