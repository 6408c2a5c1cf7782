import assert from 'node:assert/strict';
import { get as httpGet } from 'node:http';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { listUsers } from '../../src/db/users-repository.js';
import { createApiCache, type ApiBody } from '../../src/http/api-cache.js';
import type { ImportSource } from '../../src/importer/import-source.js';
import { importUsers } from '../../src/importer/import-users.js';
import { generateUsers } from '../../scripts/generate-users-lib.js';
import { createTestApp } from '../helpers/test-app.js';
import { contractOf } from '../helpers/tricky-users.js';

const TOKEN = 'a-long-enough-admin-token-for-tests';

/** 12,000 users: six pages of 2,000 ids, over 1 MB, so the memory body is a list of pages. */
const USERS = 12_000;

const csvSource = (rows: number): ImportSource => ({
  format: 'csv',
  open: () => Readable.from([Buffer.from([...generateUsers(rows)].join(''))]),
});

interface Got {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** A GET over real HTTP with exactly these headers (the fast path answers the plain one). */
function get(url: string, headers: Record<string, string> = {}): Promise<Got> {
  return new Promise((resolve, reject) => {
    httpGet(url, { headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () =>
        resolve({
          status: response.statusCode ?? 0,
          headers: response.headers,
          body: Buffer.concat(chunks),
        }),
      );
      response.on('error', reject);
    }).on('error', reject);
  });
}

describe('bare /api in memory under single-user writes', () => {
  it('serves the bytes and ETag of a from-scratch build after random creates, updates and deletes', async (t) => {
    // The version is read once a minute at most: every change below is seen because it was
    // written through this instance (read-your-writes), not because the cache looked again.
    const { app, db } = await createTestApp(t, {
      ADMIN_TOKEN: TOKEN,
      API_CACHE_CHECK_MS: '60000',
    });
    await importUsers(db, csvSource(USERS), 'replace');
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    const ids = Array.from({ length: USERS }, (_, index) => index + 1);
    let seed = 21;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const user = (step: number) => ({
      NAME: `Writer ${step}`,
      STREET: `${step} Page Street`,
      CITY: step % 3 === 0 ? 'Zoë 😀 Śródmieście' : 'Albany',
      STATE: 'NY',
      USER_DATE: '01/02/03',
    });
    const write = async (step: number) => {
      const kind = random(4);
      const headers = { authorization: `Bearer ${TOKEN}`, 'if-match': '*' };
      if (kind === 0 || ids.length === 0) {
        const created = await app.inject({
          method: 'POST',
          url: '/api/users',
          headers,
          payload: user(step),
        });
        assert.equal(created.statusCode, 201, created.body);
        ids.push(Number(String(created.headers.location).split('/').at(-1)));
        return;
      }
      const at = random(ids.length);
      const id = ids[at]!;
      if (kind === 1) {
        const deleted = await app.inject({ method: 'DELETE', url: `/api/users/${id}`, headers });
        assert.equal(deleted.statusCode, 204, deleted.body);
        ids.splice(at, 1);
      } else if (kind === 2) {
        const patched = await app.inject({
          method: 'PATCH',
          url: `/api/users/${id}`,
          headers: { ...headers, 'content-type': 'application/merge-patch+json' },
          payload: { CITY: user(step).CITY, NAME: `Patched ${step}` },
        });
        assert.equal(patched.statusCode, 200, patched.body);
      } else {
        const replaced = await app.inject({
          method: 'PUT',
          url: `/api/users/${id}`,
          headers,
          payload: user(step),
        });
        assert.equal(replaced.statusCode, 200, replaced.body);
      }
    };

    // Bounded: 12 rounds of 1-6 writes each.
    for (let round = 0, step = 0; round < 12; round += 1) {
      for (let writes = 1 + random(6); writes > 0; writes -= 1) await write((step += 1));
      // At once after the writes (no wait, no retry): the writes' instance serves them.
      const plain = await get(`${url}/api`);
      const gzip = await get(`${url}/api`, { 'accept-encoding': 'gzip' });
      const br = await get(`${url}/api`, { 'accept-encoding': 'br' });

      const scratch = createApiCache({ db, maxBytes: 1 << 30, checkMs: 0 });
      const full = (await scratch.current()) as ApiBody;
      await scratch.close();
      assert.ok((full.memory?.chunks.length ?? 0) > 1, 'the memory body is a list of pages');
      const expected = Buffer.concat(full.memory?.chunks ?? []);
      assert.equal(
        expected.toString(),
        JSON.stringify((await db.read(listUsers)).map(contractOf)),
        'a from-scratch build is the contract',
      );

      assert.equal(plain.status, 200);
      assert.equal(plain.headers.etag, full.etag, `round ${round}`);
      assert.equal(plain.headers['content-length'], String(expected.length));
      assert.ok(plain.body.equals(expected), `round ${round}: identity bytes`);
      assert.equal(gzip.headers['content-encoding'], 'gzip');
      assert.equal(gzip.headers.etag, full.etagOf('gzip'));
      assert.equal(gzip.headers['content-length'], String(gzip.body.length));
      assert.ok(gunzipSync(gzip.body).equals(expected), `round ${round}: gzip bytes`);
      assert.equal(br.headers['content-encoding'], 'br');
      assert.ok(brotliDecompressSync(br.body).equals(expected), `round ${round}: br bytes`);

      // Ranges across page boundaries, a suffix, and one past the end.
      const start = random(expected.length);
      const end = Math.min(expected.length - 1, start + random(600_000));
      for (const [range, from, to] of [
        [`bytes=${start}-${end}`, start, end + 1],
        [`bytes=${start}-`, start, expected.length],
        ['bytes=-1000', expected.length - 1000, expected.length],
      ] as const) {
        const part = await get(`${url}/api`, { range });
        assert.equal(part.status, 206, range);
        assert.equal(part.headers['content-range'], `bytes ${from}-${to - 1}/${expected.length}`);
        assert.ok(part.body.equals(expected.subarray(from, to)), `round ${round}: ${range}`);
      }
      const past = await get(`${url}/api`, { range: `bytes=${expected.length}-` });
      assert.equal(past.status, 416);
      assert.equal(past.headers['content-range'], `bytes */${expected.length}`);
    }
  });
});
