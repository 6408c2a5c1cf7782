import assert from 'node:assert/strict';
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import { get as httpGet, type ClientRequest, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { describe, it, type TestContext } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { beginWriteTransaction } from '../../src/db/begin-write-transaction.js';
import { listUsers, readDataVersion } from '../../src/db/users-repository.js';
import { createApiCache, type ApiBody } from '../../src/http/api-cache.js';
import type { ImportSource } from '../../src/importer/import-source.js';
import { importUsers } from '../../src/importer/import-users.js';
import { buildApp } from '../../src/app.js';
import { bodyStream } from '../../src/http/send-api-body.js';
import { generateUsers } from '../../scripts/generate-users-lib.js';
import { startBuiltServer } from '../helpers/child-server.js';
import { eventually } from '../helpers/mariadb.js';
import { loadGeneratedUsers } from '../helpers/slow-readers.js';
import { createTestApp, testAppDependencies, type TestApp } from '../helpers/test-app.js';
import { REPO_ROOT } from '../helpers/paths.js';
import { createTestDatabase } from '../helpers/test-database.js';
import { contractOf, storeTrickyUsers } from '../helpers/tricky-users.js';

const csvSource = (rows: number): ImportSource => ({
  format: 'csv',
  open: () => Readable.from([Buffer.from([...generateUsers(rows)].join(''))]),
});

/** Page files only (no memory copy), so every request below is served from them. */
const PAGES_ONLY = { API_CACHE_MAX_BYTES: '0', API_CACHE_CHECK_MS: '0' };

/** The body as a from-scratch render would make it: JSON.stringify of every user in load order. */
async function expectedBody({ db }: TestApp): Promise<string> {
  return JSON.stringify((await db.read(listUsers)).map(contractOf));
}

/** Every byte of one representation of a built body, as a response would send it. */
async function readAll(body: ApiBody, encoding: 'gzip' | undefined): Promise<Buffer> {
  const opened = await body.open(encoding);
  const chunks: Buffer[] = [];
  for await (const chunk of bodyStream(opened, 0, opened.length, {
    idleTimeoutMs: 10_000,
    cut: () => undefined,
  })) {
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** The uncompressed body of a version kept in memory. */
const memoryText = (body: ApiBody) => Buffer.concat(body.memory?.chunks ?? []).toString();

/** GET /api once the page files of the current version are built (the first may stream). */
async function servedFromPages(testApp: TestApp, headers: Record<string, string> = {}) {
  let response = await testApp.app.inject({ method: 'GET', url: '/api', headers });
  await eventually(async () => {
    response = await testApp.app.inject({ method: 'GET', url: '/api', headers });
    return response.headers.etag !== undefined;
  }, 'the page files are built');
  return response;
}

describe('bare /api from page files', () => {
  it('serves the bytes of a from-scratch build across random versions, gzip included', async (t) => {
    const served = await createTestApp(t, PAGES_ONLY);
    await storeTrickyUsers(served.db);
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    for (let step = 0; step < 6; step += 1) {
      const rows = 1 + random(4500);
      await importUsers(served.db, csvSource(rows), random(3) === 0 ? 'replace' : 'append');
      const expected = await expectedBody(served);
      const plain = await servedFromPages(served);
      assert.equal(plain.statusCode, 200);
      assert.equal(plain.body, expected, `step ${step}`);
      assert.equal(plain.headers['content-length'], String(Buffer.byteLength(expected)));
      assert.equal(plain.headers['accept-ranges'], 'bytes');
      const gzip = await served.app.inject({
        method: 'GET',
        url: '/api',
        headers: { 'accept-encoding': 'gzip' },
      });
      assert.equal(gzip.headers['content-encoding'], 'gzip');
      assert.equal(gzip.headers.etag, String(plain.headers.etag).replace(/"$/, '-gz"'));
      assert.equal(gunzipSync(gzip.rawPayload).toString(), expected);
      // br is not kept for page files: gzip when the client takes it, else identity.
      const br = await served.app.inject({
        method: 'GET',
        url: '/api',
        headers: { 'accept-encoding': 'br, gzip' },
      });
      assert.equal(br.headers['content-encoding'], 'gzip');
      const brOnly = await served.app.inject({
        method: 'GET',
        url: '/api',
        headers: { 'accept-encoding': 'br' },
      });
      assert.equal(brOnly.headers['content-encoding'], undefined);
      assert.equal(brOnly.body, expected);

      // A from-scratch build of the same data elsewhere: the same strong ETag, from memory too.
      const memory = createApiCache({ db: served.db, maxBytes: 1 << 30, checkMs: 0 });
      const rebuilt = (await memory.current()) as ApiBody;
      assert.equal(memoryText(rebuilt), expected);
      assert.equal(rebuilt.etag, plain.headers.etag);
      await memory.close();
    }
    const revalidated = await served.app.inject({
      method: 'GET',
      url: '/api',
      headers: { 'if-none-match': String((await servedFromPages(served)).headers.etag) },
    });
    assert.equal(revalidated.statusCode, 304);
  });

  it('answers byte ranges across pages, 416 past the end, and the whole body otherwise', async (t) => {
    const served = await createTestApp(t, PAGES_ONLY);
    await importUsers(served.db, csvSource(7000), 'replace');
    const whole = await servedFromPages(served);
    const bytes = whole.rawPayload;
    const etag = String(whole.headers.etag);
    const get = (headers: Record<string, string>) =>
      served.app.inject({ method: 'GET', url: '/api', headers });
    const ranges: [number, number][] = [
      [0, 0],
      [0, bytes.length - 1],
      [1, 2],
      [190_000, 650_000],
      [bytes.length - 5, bytes.length - 1],
    ];
    for (let index = 0; index < 20; index += 1) {
      const start = Math.floor(Math.random() * bytes.length);
      ranges.push([start, Math.min(bytes.length - 1, start + Math.floor(Math.random() * 500_000))]);
    }
    for (const [start, end] of ranges) {
      // Compression is asked for and not used: a range is of the uncompressed body.
      const part = await get({ range: `bytes=${start}-${end}`, 'accept-encoding': 'gzip' });
      assert.equal(part.statusCode, 206, `${start}-${end}`);
      assert.equal(part.headers['content-range'], `bytes ${start}-${end}/${bytes.length}`);
      assert.equal(part.headers['content-encoding'], undefined);
      assert.deepEqual(part.rawPayload, bytes.subarray(start, end + 1));
    }
    const suffix = await get({ range: 'bytes=-100' });
    assert.deepEqual(suffix.rawPayload, bytes.subarray(bytes.length - 100));
    const open = await get({ range: `bytes=${bytes.length - 10}-` });
    assert.deepEqual(open.rawPayload, bytes.subarray(bytes.length - 10));
    const beyondEnd = await get({ range: `bytes=10-${bytes.length + 1000}` });
    assert.equal(
      beyondEnd.headers['content-range'],
      `bytes 10-${bytes.length - 1}/${bytes.length}`,
    );

    const unsatisfiable = await get({ range: `bytes=${bytes.length}-` });
    assert.equal(unsatisfiable.statusCode, 416);
    assert.equal(unsatisfiable.headers['content-range'], `bytes */${bytes.length}`);
    assert.equal(unsatisfiable.json<{ code: string }>().code, 'ERR_HTTP_RANGE_NOT_SATISFIABLE');
    assert.equal((await get({ range: 'bytes=-0' })).statusCode, 416);

    // Malformed, another unit, several ranges: Range is ignored, the whole body (RFC 9110 §14.2).
    for (const range of ['bytes=5-2', 'bytes=x-1', 'items=0-1', 'bytes=0-1,5-6', 'bytes=', '0-1']) {
      const response = await get({ range });
      assert.equal(response.statusCode, 200, range);
      assert.deepEqual(response.rawPayload, bytes, range);
    }
    // If-Range: the current ETag honours the range; another one (or a date) gets it all.
    assert.equal((await get({ range: 'bytes=0-9', 'if-range': etag })).statusCode, 206);
    const stale = await get({ range: 'bytes=0-9', 'if-range': '"v0-old"' });
    assert.equal(stale.statusCode, 200);
    assert.deepEqual(stale.rawPayload, bytes);
    const dated = await get({ range: 'bytes=0-9', 'if-range': 'Sat, 05 Dec 2026 06:00:00 GMT' });
    assert.equal(dated.statusCode, 200);
    // Memory bodies take ranges the same way.
    const small = await createTestApp(t);
    await importUsers(small.db, csvSource(100), 'replace');
    const smallWhole = await small.app.inject({ method: 'GET', url: '/api' });
    const smallPart = await small.app.inject({
      method: 'GET',
      url: '/api',
      headers: { range: 'bytes=3-40' },
    });
    assert.equal(smallPart.statusCode, 206);
    assert.deepEqual(smallPart.rawPayload, smallWhole.rawPayload.subarray(3, 41));
  });

  it('re-renders only the page a noted one-row change touched, bytes as a full rebuild', async (t) => {
    const { db } = await createTestDatabase(t);
    await importUsers(db, csvSource(700), 'replace');
    const rendered: number[] = [];
    const { dir } = await createTestDatabase(t);
    const cache = createApiCache({
      db,
      maxBytes: 0,
      checkMs: 0,
      bodyDir: join(dir, 'pages'),
      pageIds: 10,
      events: { built: (info) => rendered.push(info.renderedPages) },
    });
    t.after(() => cache.close());
    /** The body as a from-scratch build in memory makes it. */
    const scratch = async () => {
      const fresh = createApiCache({ db, maxBytes: 1 << 30, checkMs: 0, pageIds: 10 });
      const body = (await fresh.current()) as ApiBody;
      await fresh.close();
      return body;
    };
    // 70 pages, over what a request waits for: built in the background (the first request
    // streams meanwhile).
    assert.equal(await cache.current(), undefined);
    await eventually(() => rendered.length === 1, 'the first version is built');
    assert.deepEqual(rendered, [70]);
    // Gzip members are made when gzip is asked for: with more than a request waits for
    // missing, the first such request gets identity while they are made.
    const first = (await cache.current()) as ApiBody;
    const folder = runFolder(join(dir, 'pages'));
    assert.equal(readdirSync(folder).filter((file) => file.endsWith('.gz')).length, 0);
    assert.equal(first.offers('gzip'), false);
    await eventually(() => first.offers('gzip'), 'the gzip members are made');
    assert.equal(readdirSync(folder).filter((file) => file.endsWith('.gz')).length, 70);
    assert.equal(gunzipSync(await readAll(first, 'gzip')).toString(), memoryText(await scratch()));
    for (const id of [1, 10, 11, 57, 95, 57]) {
      const trx = await beginWriteTransaction(db);
      await trx
        .updateTable('users')
        .set({ street: `Changed ${id} ${rendered.length}` })
        .where('id', '=', id)
        .execute();
      await trx.commit().execute();
      cache.noteChange(await db.read(readDataVersion), [id]);
      const body = (await cache.current()) as ApiBody;
      assert.equal(rendered.at(-1), 1, `one page re-rendered for id ${id}`);
      const full = await scratch();
      assert.equal((await readAll(body, undefined)).toString(), memoryText(full));
      assert.equal(body.etag, full.etag);
      // One member missing: made while the gzip request waits.
      assert.equal(body.offers('gzip'), true);
      assert.equal(gunzipSync(await readAll(body, 'gzip')).toString(), memoryText(full));
    }
    // A version without a note (another writer) is rendered whole.
    const trx = await beginWriteTransaction(db);
    await trx.commit().execute();
    await cache.current();
    await eventually(() => rendered.length === 8, 'the unnoted version is built');
    assert.equal(rendered.at(-1), 70);
  });

  it('renders only the pages that hold users when ids are sparse (one id of 2,000,000,000)', async (t) => {
    const { db } = await createTestDatabase(t);
    await importUsers(db, csvSource(25), 'replace');
    const farId = 2_000_000_000;
    const writeFarUser = async (street: string) => {
      const trx = await beginWriteTransaction(db);
      await trx
        .insertInto('users')
        .values({
          id: farId,
          name: 'Far Away',
          street,
          city: 'C',
          state: 'NY',
          user_date: '01/01/01',
        })
        .onConflict((conflict) => conflict.column('id').doUpdateSet({ street }))
        .execute();
      await trx.commit().execute();
      return db.read(readDataVersion);
    };
    await writeFarUser('First');
    const rendered: number[] = [];
    const cache = createApiCache({
      db,
      maxBytes: 0,
      checkMs: 0,
      bodyDir: join((await createTestDatabase(t)).dir, 'pages'),
      pageIds: 10,
      events: { built: (info) => rendered.push(info.renderedPages) },
    });
    t.after(() => cache.close());
    await cache.current();
    // 200,000,000 id ranges: visiting each would never finish. Three pages hold the 25 users,
    // one is read empty before the seek past the gap, one holds the far user.
    await eventually(() => rendered.length === 1, 'the first version is built');
    assert.deepEqual(rendered, [5]);
    cache.noteChange(await writeFarUser('Second'), [farId]);
    const body = (await cache.current()) as ApiBody;
    assert.deepEqual(rendered, [5, 1]);
    const scratch = createApiCache({ db, maxBytes: 1 << 30, checkMs: 0, pageIds: 10 });
    t.after(() => scratch.close());
    const full = (await scratch.current()) as ApiBody;
    assert.equal(body.etag, full.etag);
    assert.match(memoryText(full), /"NAME":"Far Away","STREET":"Second"/);
  });

  it('falls back to streaming from the database when the page folder cannot be written', async (t) => {
    const served = await createTestApp(t, {
      ...PAGES_ONLY,
      // Under a regular file: every mkdir fails (ENOTDIR), as a full or read-only disk would.
      API_BODY_DIR: join(REPO_ROOT, 'data/users.csv/pages'),
    });
    await importUsers(served.db, csvSource(3000), 'replace');
    for (let attempt = 0; attempt < 3; attempt += 1) {
      const response = await served.app.inject({ method: 'GET', url: '/api' });
      assert.equal(response.statusCode, 200);
      assert.equal(response.body, await expectedBody(served));
      assert.equal(response.headers.etag, undefined);
    }
  });
});

describe('bare /api page files and a killed process', () => {
  it('serves no half-written version after a SIGKILL during a build', async (t) => {
    const { db, dir } = await createTestDatabase(t);
    await importUsers(db, csvSource(60_000), 'replace');
    const expected = JSON.stringify((await db.read(listUsers)).map(contractOf));
    await db.close();
    const env = {
      DATABASE_URL: `sqlite:${join(dir, 'users.db')}`,
      IMPORT_ON_START: 'never',
      API_CACHE_MAX_BYTES: '0',
      LOG_LEVEL: 'info',
    };
    const bodyDir = join(dir, 'users.db.api-body');
    const first = await startBuiltServer(t, dir, env);
    // The first request starts the build (30 pages, in the background) and streams; the
    // process is killed as soon as the answer begins, with the build under way.
    const answer = await fetch(`${first.url}/api`);
    assert.equal(answer.status, 200);
    await first.stop('SIGKILL');
    await answer.body?.cancel().catch(() => undefined);
    assert.ok(existsSync(bodyDir));
    const second = await startBuiltServer(t, dir, env);
    await eventually(async () => {
      const response = await fetch(`${second.url}/api`);
      assert.equal(await response.text(), expected);
      return response.headers.get('etag') !== null;
    }, 'the restarted server serves page files');
    // The killed run's folder is gone; only this run's is left.
    assert.equal(readdirSync(bodyDir).length, 1);
    assert.equal(
      await (await fetch(`${second.url}/api`, { headers: { range: 'bytes=0-0' } })).text(),
      '[',
    );
    await second.stop();
    assert.deepEqual(readdirSync(bodyDir), [], 'a clean stop deletes its page files');
  });
});

/** The page folder of this run (one `run-<pid>-<time>` under API_BODY_DIR). */
function runFolder(bodyDir: string): string {
  const runs = readdirSync(bodyDir).filter((entry) => entry.startsWith('run-'));
  assert.equal(runs.length, 1, `one run folder in ${bodyDir}`);
  return join(bodyDir, runs[0]!);
}

/** What this process's descriptors point at (the server runs in it). */
function openFiles(): string[] {
  return readdirSync('/proc/self/fd').flatMap((fd) => {
    try {
      return [readlinkSync(`/proc/self/fd/${fd}`)];
    } catch {
      return []; // closed since the listing (the listing's own descriptor, for one)
    }
  });
}

/** A GET that takes the first bytes of the answer and then stops reading (backpressure). */
function pausedGet(url: string, headers: Record<string, string> = {}) {
  return new Promise<{ response: IncomingMessage; request: ClientRequest; first: Buffer }>(
    (resolve, reject) => {
      const request = httpGet(url, { agent: false, headers }, (response) => {
        response.once('data', (first: Buffer) => {
          response.pause();
          resolve({ response, request, first });
        });
      });
      request.once('error', reject);
    },
  );
}

/**
 * A listening app on `rows` generated users with page files only, once the first version's files
 * are built and every one of them has been read (descriptors kept), and its full body.
 */
async function listeningOnPages(t: TestContext, rows: number) {
  // A paused client is not cut while the machine is slow to build the next version.
  const { db, config } = await createTestDatabase(t, {
    ...PAGES_ONLY,
    STREAM_IDLE_TIMEOUT_MS: '600000',
  });
  await loadGeneratedUsers(db, rows);
  const app = buildApp(testAppDependencies(config, db));
  t.after(() => app.close());
  const url = `${await app.listen({ port: 0, host: '127.0.0.1' })}/api`;
  const etagNow = async () => {
    const response = await fetch(url, { headers: { range: 'bytes=0-0' } });
    await response.arrayBuffer();
    return response.headers.get('etag');
  };
  await eventually(async () => (await etagNow()) !== null, 'the page files are built');
  // fetch asks for gzip unless told otherwise.
  const body = Buffer.from(
    await (await fetch(url, { headers: { 'accept-encoding': 'identity' } })).arrayBuffer(),
  );
  // Gzip members are made at the first gzip request (over 64 of them: identity meanwhile).
  await eventually(async () => {
    const gzip = await fetch(url, { headers: { 'accept-encoding': 'gzip' } });
    await gzip.arrayBuffer();
    return gzip.headers.get('content-encoding') === 'gzip';
  }, 'the gzip members are made');
  const folder = runFolder(String(config.apiBodyDir));
  return { db, url, body, folder, etagNow, files: readdirSync(folder) };
}

/**
 * Whether `folder` holds the files of `pages` pages and no others: each page's JSON, and a gzip
 * member only where a gzip request made one (here: a page the old version had too).
 */
function holdsPagesOnly(folder: string, pages: number): boolean {
  const files = readdirSync(folder);
  const hashes = new Set(files.filter((file) => file.endsWith('.json')).map((f) => f.slice(0, 64)));
  return hashes.size === pages && files.every((file) => hashes.has(file.slice(0, 64)));
}

/** A body larger than every socket buffer between a paused client and the server's reads. */
const LARGE_ROWS = 200_000;

describe('bare /api page files and their readers', () => {
  it('keeps a slow reader’s files while a new version replaces its own, then removes them', async (t) => {
    const served = await listeningOnPages(t, LARGE_ROWS);
    const oldEtag = await served.etagNow();
    const slow = await pausedGet(served.url);
    assert.equal(slow.response.statusCode, 200);
    assert.equal(slow.response.headers.etag, oldEtag);
    // Another set of users (3,000: two pages): a new version whose pages are new files.
    await importUsers(served.db, csvSource(3000), 'replace');
    await eventually(
      async () => ![null, oldEtag].includes(await served.etagNow()),
      'the new version is served',
    );
    // The slow reader still holds the old version: every one of its files is on disk.
    for (const file of served.files) assert.ok(existsSync(join(served.folder, file)), file);
    const chunks: Buffer[] = [slow.first];
    slow.response.on('data', (chunk: Buffer) => chunks.push(chunk));
    slow.response.resume();
    // Rejects, rather than waits forever, if the body is cut short.
    await finished(slow.response);
    assert.ok(Buffer.concat(chunks).equals(served.body), 'the old version’s bytes, whole');
    // Its reader gone, the old version's files (all but the new one's two pages) and their
    // descriptors go.
    await eventually(() => holdsPagesOnly(served.folder, 2), 'the old version’s files are removed');
    const newFiles = new Set(readdirSync(served.folder));
    const oldOnly = served.files.filter((file) => !newFiles.has(file));
    assert.ok(oldOnly.length > 150, `${oldOnly.length} files of the old version alone`);
    // Descriptors close asynchronously, as the files are removed.
    await eventually(
      () => !openFiles().some((path) => oldOnly.some((file) => path.includes(file))),
      'the old version’s descriptors are closed',
    );
  });

  it('releases every file and descriptor of a client that leaves mid-body', async (t) => {
    const served = await listeningOnPages(t, LARGE_ROWS);
    const oldEtag = await served.etagNow();
    const before = openFiles();
    // Identity, gzip and a range; each leaves after its first bytes, mid read-ahead.
    const leaving = await Promise.all([
      pausedGet(served.url),
      pausedGet(served.url, { 'accept-encoding': 'gzip' }),
      pausedGet(served.url, { range: 'bytes=1000-' }),
    ]);
    assert.deepEqual(
      leaving.map(({ response }) => response.statusCode),
      [200, 200, 206],
    );
    for (const { request } of leaving) request.destroy();
    // Sockets closed, nothing else opened: the server is back to its descriptors before.
    await eventually(() => openFiles().length <= before.length, 'the descriptors are closed').catch(
      (error: unknown) => {
        const now = openFiles();
        throw new Error(
          `before ${before.length}, now ${now.length}: ${now.filter((path) => !before.includes(path)).join(', ')}`,
          { cause: error },
        );
      },
    );
    // Nobody holds the old version: a new one replaces it and its files and descriptors go.
    await importUsers(served.db, csvSource(3000), 'replace');
    await eventually(
      async () => ![null, oldEtag].includes(await served.etagNow()),
      'the new version is served',
    );
    await eventually(() => holdsPagesOnly(served.folder, 2), 'the old version’s files are removed');
    await eventually(
      () => !openFiles().some((path) => path.includes(served.folder) && path.endsWith('(deleted)')),
      'no descriptor of a removed file is open',
    );
    assert.ok(openFiles().length < before.length, 'the old version’s descriptors are closed');
  });
});
