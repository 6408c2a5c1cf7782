import assert from 'node:assert/strict';
import { request } from 'node:http';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { listUsers } from '../../src/db/users-repository.js';
import { importUsers } from '../../src/importer/import-users.js';
import type { ImportSource } from '../../src/importer/import-source.js';
import { generateUsers } from '../../scripts/generate-users-lib.js';
import { eventually } from '../helpers/mariadb.js';
import { createTestApp } from '../helpers/test-app.js';
import { contractOf, storeTrickyUsers, TRICKY_CITY } from '../helpers/tricky-users.js';

const PROBLEM_JSON = 'application/problem+json; charset=utf-8';

function csvSource(text: string): ImportSource {
  return { format: 'csv', open: () => Readable.from([Buffer.from(text)]) };
}

const sampleCsv = (rows: number) => [...generateUsers(rows)].join('');

type ApiUser = Record<string, string | number>;

describe('GET /api cache', () => {
  it('answers a strong ETag, 304 for If-None-Match, and br/gzip copies of the same body', async (t) => {
    const { app } = await createTestApp(t);
    await app.inject({ method: 'POST', url: '/addtosql' });
    const plain = await app.inject({ method: 'GET', url: '/api' });
    assert.equal(plain.statusCode, 200);
    const etag = String(plain.headers.etag);
    assert.match(etag, /^"v\d+-[A-Za-z0-9_-]+"$/);
    assert.equal(plain.headers['cache-control'], 'no-cache');
    assert.match(String(plain.headers.vary), /Accept-Encoding/);

    const notModified = await app.inject({
      method: 'GET',
      url: '/api',
      headers: { 'if-none-match': etag },
    });
    assert.equal(notModified.statusCode, 304);
    assert.equal(notModified.body, '');

    const br = await app.inject({
      method: 'GET',
      url: '/api',
      headers: { 'accept-encoding': 'gzip, deflate, br' },
    });
    assert.equal(br.headers['content-encoding'], 'br');
    assert.equal(br.headers.etag, etag.replace(/"$/, '-br"'));
    assert.equal(brotliDecompressSync(br.rawPayload).toString(), plain.body);
    assert.ok(br.rawPayload.length < plain.rawPayload.length / 3);

    const gzip = await app.inject({
      method: 'GET',
      url: '/api',
      headers: { 'accept-encoding': 'gzip' },
    });
    assert.equal(gzip.headers['content-encoding'], 'gzip');
    assert.equal(gunzipSync(gzip.rawPayload).toString(), plain.body);
    // A client holding the compressed copy revalidates with its own tag.
    const revalidated = await app.inject({
      method: 'GET',
      url: '/api',
      headers: { 'accept-encoding': 'gzip', 'if-none-match': String(gzip.headers.etag) },
    });
    assert.equal(revalidated.statusCode, 304);
  });

  it('sees a write through this instance at once and one through another within API_CACHE_CHECK_MS', async (t) => {
    const { app, db } = await createTestApp(t, { API_CACHE_CHECK_MS: '200' });
    await app.inject({ method: 'POST', url: '/addtosql' });
    const first = await app.inject({ method: 'GET', url: '/api' });
    assert.equal(first.json<unknown[]>().length, 1000);

    // Through this instance's /addtosql: visible on the very next request.
    await app.inject({
      method: 'POST',
      url: '/addtosql?mode=append',
      headers: { 'content-type': 'text/csv' },
      payload: 'NAME,STREET,CITY,STATE,USER_DATE\nAda Local,S,C,NY,01/01/01\n',
    });
    const second = await app.inject({ method: 'GET', url: '/api' });
    assert.equal(second.json<ApiUser[]>().at(-1)?.NAME, 'Ada Local');
    assert.notEqual(second.headers.etag, first.headers.etag);
    const stale = await app.inject({
      method: 'GET',
      url: '/api',
      headers: { 'if-none-match': String(first.headers.etag) },
    });
    assert.equal(stale.statusCode, 200, 'an old ETag no longer matches');

    // Another writer on the same database (another instance, the CLI): seen once the cache
    // checks the data version again, within API_CACHE_CHECK_MS.
    await importUsers(
      db,
      csvSource('NAME,STREET,CITY,STATE,USER_DATE\nBo Remote,S,C,NY,01/01/01\n'),
      'append',
    );
    // (Bounded wait, no assertion on time: the machine running the tests may be busy.)
    await eventually(async () => {
      const users = (await app.inject({ method: 'GET', url: '/api' })).json<ApiUser[]>();
      return users.at(-1)?.NAME === 'Bo Remote';
    }, 'the other writer is visible');
  });

  it('streams the same bytes as the cache when over API_CACHE_MAX_BYTES without page files', async (t) => {
    const cached = await createTestApp(t);
    const streamed = await createTestApp(t, { API_CACHE_MAX_BYTES: '0', API_BODY_DIR: 'off' });
    for (const { db } of [cached, streamed]) {
      await importUsers(db, csvSource(sampleCsv(5000)), 'replace');
    }
    const fromCache = await cached.app.inject({ method: 'GET', url: '/api' });
    const fromStream = await streamed.app.inject({ method: 'GET', url: '/api' });
    assert.equal(fromStream.statusCode, 200);
    assert.equal(fromStream.headers['content-type'], 'application/json; charset=utf-8');
    assert.equal(fromStream.headers.etag, undefined);
    assert.equal(fromStream.body, fromCache.body);
    assert.equal(fromStream.json<unknown[]>().length, 5000);
    const gzip = await streamed.app.inject({
      method: 'GET',
      url: '/api',
      headers: { 'accept-encoding': 'gzip' },
    });
    assert.equal(gunzipSync(gzip.rawPayload).toString(), fromCache.body);
    assert.equal(streamed.db.activeSnapshots(), 0);
  });

  it('renders the bare body byte for byte as JSON.stringify of the users, over many pages', async (t) => {
    // The database writes the JSON (db/dialects/users-json.ts); the contract is JSON.stringify's
    // bytes: escapes, non-ASCII, and load order across the page boundaries.
    for (const env of [{}, { API_CACHE_MAX_BYTES: '0', API_BODY_DIR: 'off' }]) {
      const { app, db } = await createTestApp(t, env);
      await storeTrickyUsers(db);
      await importUsers(db, csvSource(sampleCsv(4500)), 'append');
      const expected = JSON.stringify((await db.read(listUsers)).map(contractOf));
      const response = await app.inject({ method: 'GET', url: '/api' });
      assert.equal(response.statusCode, 200);
      assert.equal(response.body, expected);
      assert.equal(response.json<ApiUser[]>().length, 4503);
      assert.equal(response.json<ApiUser[]>()[1]?.CITY, TRICKY_CITY);
    }
    // An empty table is an empty array on both paths.
    for (const env of [{}, { API_CACHE_MAX_BYTES: '0', API_BODY_DIR: 'off' }]) {
      const { app } = await createTestApp(t, env);
      assert.equal((await app.inject({ method: 'GET', url: '/api' })).body, '[]');
    }
  });

  it('answers HEAD without a body, cached or streamed, and releases the snapshot', async (t) => {
    for (const env of [{}, { API_CACHE_MAX_BYTES: '0', API_BODY_DIR: 'off' }]) {
      const { app, db } = await createTestApp(t, env);
      await importUsers(db, csvSource(sampleCsv(20_000)), 'replace');
      const head = await app.inject({ method: 'HEAD', url: '/api' });
      assert.equal(head.statusCode, 200);
      assert.equal(head.body, '');
      await eventually(() => db.activeSnapshots() === 0, 'the snapshot is released', 10_000);
    }
  });

  it('releases the snapshot when a client leaves in the middle of a stream', async (t) => {
    const { app, db } = await createTestApp(t, { API_CACHE_MAX_BYTES: '0', API_BODY_DIR: 'off' });
    await importUsers(db, csvSource(sampleCsv(100_000)), 'replace');
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    await new Promise<void>((resolve, reject) => {
      const client = request(`${url}/api`, (response) => {
        // Read one chunk, then stop reading and hang up: ~10 MB are still to come.
        response.once('data', () => {
          response.pause();
          assert.ok(db.activeSnapshots() >= 1, 'the stream holds a snapshot');
          client.destroy();
          resolve();
        });
      });
      client.on('error', (error) => {
        if ((error as NodeJS.ErrnoException).code !== 'ECONNRESET') reject(error);
      });
      client.end();
    });
    await eventually(() => db.activeSnapshots() === 0, 'the snapshot is released', 10_000);
    // And the database still answers.
    const after = await fetch(`${url}/api/count`);
    assert.deepEqual(await after.json(), { count: 100_000 });
  });
});

describe('GET /api query', () => {
  it('filters by state, city, name prefix and text, and counts the same', async (t) => {
    const { app } = await createTestApp(t);
    await app.inject({ method: 'POST', url: '/addtosql' });
    const all = (await app.inject({ method: 'GET', url: '/api' })).json<ApiUser[]>();
    const get = async (url: string) => (await app.inject({ method: 'GET', url })).json<ApiUser[]>();
    const count = async (url: string) =>
      (await app.inject({ method: 'GET', url })).json<{ count: number }>().count;

    const ny = all.filter((user) => user.STATE === 'NY');
    assert.deepEqual(await get('/api?state=ny'), ny);
    assert.equal(await count('/api/count?state=NY'), ny.length);
    assert.equal(await count('/api/count'), 1000);

    assert.deepEqual(await get('/api?city=Zurmubku'), [all[0]]);
    const du = all.filter((user) => String(user.NAME).toLowerCase().startsWith('du'));
    assert.ok(du.length > 1);
    assert.deepEqual(await get('/api?name=dU'), du);
    const path = all.filter((user) =>
      [user.NAME, user.STREET, user.CITY, user.STATE].some((v) =>
        String(v).toLowerCase().includes('path'),
      ),
    );
    assert.deepEqual(await get('/api?q=PATH'), path);
    assert.equal(await count('/api/count?q=PATH'), path.length);
    // LIKE wildcards in the input are literal.
    assert.deepEqual(await get('/api?q=%25'), []);
    assert.deepEqual(await get('/api?name=_'), []);
  });

  it('sorts by a column (USER_DATE as a date), ties in load order, and pages with a cursor', async (t) => {
    const { app } = await createTestApp(t);
    await app.inject({ method: 'POST', url: '/addtosql' });
    const all = (await app.inject({ method: 'GET', url: '/api?fields=ID,NAME,USER_DATE' })).json<
      { ID: number; NAME: string; USER_DATE: string }[]
    >();
    const dateKey = (d: string) => d.slice(6) + d.slice(3, 5) + d.slice(0, 2);
    const byDateDesc = [...all].sort((a, b) => {
      const order = dateKey(b.USER_DATE).localeCompare(dateKey(a.USER_DATE));
      return order !== 0 ? order : b.ID - a.ID;
    });

    // Walk every page of 100 by following rel="next".
    let url: string | undefined = '/api?sort=-USER_DATE&limit=100&fields=ID,NAME,USER_DATE';
    const seen: { ID: number }[] = [];
    let pages = 0;
    while (url !== undefined && pages < 20) {
      const response: Awaited<ReturnType<typeof app.inject>> = await app.inject({
        method: 'GET',
        url,
      });
      assert.equal(response.statusCode, 200);
      seen.push(...response.json<{ ID: number }[]>());
      const link = response.headers.link;
      url = /<([^>]+)>; rel="next"/.exec(typeof link === 'string' ? link : '')?.[1];
      pages += 1;
    }
    assert.deepEqual(seen, byDateDesc);

    const byName = (await app.inject({ method: 'GET', url: '/api?sort=NAME&fields=ID,NAME' }))
      .json<{ ID: number; NAME: string }[]>()
      .map((user) => user.NAME);
    assert.deepEqual(byName, [...byName].sort());
  });

  it('pages back with rel="prev" to exactly the pages it came through, in every sort', async (t) => {
    const { app } = await createTestApp(t);
    await app.inject({ method: 'POST', url: '/addtosql' });
    const linkOf = (header: unknown, rel: string) =>
      new RegExp(`<([^>]+)>; rel="${rel}"`).exec(typeof header === 'string' ? header : '')?.[1];
    for (const sort of ['', '&sort=-USER_DATE', '&sort=CITY', '&sort=NAME']) {
      const pages: { url: string; ids: number[] }[] = [];
      let url: string | undefined = `/api?state=NY&limit=3&fields=ID${sort}`;
      for (let steps = 0; url !== undefined && steps < 50; steps += 1) {
        const response: Awaited<ReturnType<typeof app.inject>> = await app.inject({
          method: 'GET',
          url,
        });
        assert.equal(response.statusCode, 200, url);
        const ids = response.json<{ ID: number }[]>().map((user) => user.ID);
        if (pages.length === 0) assert.equal(linkOf(response.headers.link, 'prev'), undefined);
        if (ids.length > 0) pages.push({ url, ids });
        url = linkOf(response.headers.link, 'next');
      }
      assert.ok(pages.length > 3, `NY has several pages of 3 (${sort})`);
      // Back from the last page: each rel="prev" is the page before, and the first has none.
      let back = linkOf(
        (await app.inject({ method: 'GET', url: pages.at(-1)?.url ?? '' })).headers.link,
        'prev',
      );
      for (let index = pages.length - 2; index >= 0; index -= 1) {
        assert.ok(back !== undefined, `page ${index} has a prev link (${sort})`);
        const response = await app.inject({ method: 'GET', url: back });
        assert.deepEqual(
          response.json<{ ID: number }[]>().map((user) => user.ID),
          pages[index]?.ids,
          `page ${index} (${sort})`,
        );
        // Forward again from a page reached backward lands on the page after it.
        const next = linkOf(response.headers.link, 'next');
        assert.ok(next !== undefined);
        const again = await app.inject({ method: 'GET', url: next });
        assert.deepEqual(
          again.json<{ ID: number }[]>().map((user) => user.ID),
          pages[index + 1]?.ids,
        );
        back = linkOf(response.headers.link, 'prev');
      }
      assert.equal(back, undefined, `the first page reached backward has no prev (${sort})`);
    }
    const prev = linkOf(
      (await app.inject({ method: 'GET', url: '/api?limit=2' })).headers.link,
      'next',
    );
    const second = await app.inject({ method: 'GET', url: prev ?? '' });
    const backCursor = /cursor=([^&>]+)>; rel="prev"/.exec(String(second.headers.link))?.[1];
    assert.ok(backCursor);
    const unlimited = await app.inject({ method: 'GET', url: `/api?cursor=${backCursor}` });
    assert.equal(unlimited.statusCode, 400);
    assert.match(unlimited.json<{ detail: string }>().detail, /rel="prev" link, which needs/);
  });

  it('answers the format ?format= names whatever Accept says, with every filter', async (t) => {
    const { app } = await createTestApp(t);
    await app.inject({ method: 'POST', url: '/addtosql' });
    const bare = await app.inject({ method: 'GET', url: '/api' });
    const asJson = await app.inject({
      method: 'GET',
      url: '/api?format=json',
      headers: { accept: 'text/csv' },
    });
    assert.equal(asJson.headers['content-type'], 'application/json; charset=utf-8');
    assert.equal(asJson.body, bare.body);
    assert.equal(asJson.headers.etag, bare.headers.etag, 'the same cached body');

    const ny = (await app.inject({ method: 'GET', url: '/api?state=NY&sort=NAME' })).json<
      ApiUser[]
    >();
    assert.ok(ny.length > 10);
    const ndjson = await app.inject({
      method: 'GET',
      url: '/api?state=NY&sort=NAME&format=ndjson',
      headers: { accept: 'application/json' },
    });
    assert.equal(ndjson.statusCode, 200);
    assert.equal(ndjson.headers['content-type'], 'application/x-ndjson; charset=utf-8');
    assert.deepEqual(
      ndjson.body
        .trimEnd()
        .split('\n')
        .map((line) => JSON.parse(line) as ApiUser),
      ny,
    );
    const csv = await app.inject({
      method: 'GET',
      url: '/api?q=a&name=d&state=NY&format=csv&fields=NAME,STATE',
      headers: { accept: 'application/x-ndjson' },
    });
    assert.equal(csv.headers['content-type'], 'text/csv; charset=utf-8');
    const rows = csv.body.trimEnd().split('\r\n');
    assert.equal(rows[0], 'NAME,STATE');
    assert.ok(rows.length > 1);
    for (const row of rows.slice(1)) assert.match(row, /^D[^,]*,NY$/i);

    // A page keeps the format in its links.
    const page = await app.inject({ method: 'GET', url: '/api?format=ndjson&limit=3' });
    assert.equal(page.body.trimEnd().split('\n').length, 3);
    assert.match(String(page.headers.link), /[?&]format=ndjson[&>]/);
    const spreadsheet = await app.inject({ method: 'GET', url: '/api?format=csv&csv=spreadsheet' });
    assert.equal(spreadsheet.statusCode, 200);
    assert.ok(spreadsheet.body.startsWith('\uFEFF'));

    for (const url of ['/api?format=xml', '/api?format=', '/api?format=json&csv=plain']) {
      const bad = await app.inject({ method: 'GET', url });
      assert.equal(bad.statusCode, 400, url);
      assert.equal(bad.headers['content-type'], PROBLEM_JSON, url);
      assert.match(bad.json<{ detail: string }>().detail, /query parameter "(format|csv)"/, url);
    }
  });

  it('keeps a cursor stable when users are added', async (t) => {
    const { app } = await createTestApp(t);
    await app.inject({ method: 'POST', url: '/addtosql' });
    const first = await app.inject({ method: 'GET', url: '/api?limit=10&fields=ID' });
    const next = /^<([^>]+)>/.exec(String(first.headers.link))?.[1];
    assert.ok(next);
    await app.inject({
      method: 'POST',
      url: '/addtosql?mode=append',
      headers: { 'content-type': 'text/csv' },
      payload: 'NAME,STREET,CITY,STATE,USER_DATE\nNew Person,S,C,NY,01/01/01\n',
    });
    const second = await app.inject({ method: 'GET', url: next });
    assert.deepEqual(
      second.json<{ ID: number }[]>().map((user) => user.ID),
      [11, 12, 13, 14, 15, 16, 17, 18, 19, 20],
    );
  });

  it('answers NDJSON and CSV by Accept; the CSV loads back through the importer', async (t) => {
    const { app } = await createTestApp(t);
    await app.inject({ method: 'POST', url: '/addtosql' });
    const json = (await app.inject({ method: 'GET', url: '/api' })).json<ApiUser[]>();

    const ndjson = await app.inject({
      method: 'GET',
      url: '/api',
      headers: { accept: 'application/x-ndjson' },
    });
    assert.equal(ndjson.headers['content-type'], 'application/x-ndjson; charset=utf-8');
    const lines = ndjson.body.trimEnd().split('\n');
    assert.deepEqual(
      lines.map((line) => JSON.parse(line) as ApiUser),
      json,
    );

    const csv = await app.inject({
      method: 'GET',
      url: '/api',
      headers: { accept: 'text/csv;q=0.9, application/json;q=0.5' },
    });
    assert.equal(csv.headers['content-type'], 'text/csv; charset=utf-8');
    assert.ok(csv.body.startsWith('NAME,STREET,CITY,STATE,USER_DATE\r\nDuane Adams,'));
    const copy = await createTestApp(t);
    await app.inject({ method: 'GET', url: '/api' });
    await importUsers(copy.db, csvSource(csv.body), 'replace');
    const copied = await copy.app.inject({ method: 'GET', url: '/api' });
    assert.deepEqual(copied.json(), json);

    // A browser's Accept gets the JSON contract.
    const browser = await app.inject({
      method: 'GET',
      url: '/api?limit=1',
      headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' },
    });
    assert.equal(browser.headers['content-type'], 'application/json; charset=utf-8');
  });

  it('quotes CSV fields that need it, and round-trips them', async (t) => {
    const { app, db } = await createTestApp(t);
    const source =
      'NAME,STREET,CITY,STATE,USER_DATE\n"Smith, Jo","1 ""Main"" St",Town,NY,01/01/01\n';
    await importUsers(db, csvSource(source), 'replace');
    const csv = await app.inject({ method: 'GET', url: '/api', headers: { accept: 'text/csv' } });
    assert.equal(
      csv.body,
      'NAME,STREET,CITY,STATE,USER_DATE\r\n"Smith, Jo","1 ""Main"" St",Town,NY,01/01/01\r\n',
    );
  });

  it('exports formula-looking values raw in text/csv, byte for byte, and loads them back', async (t) => {
    const { app, db } = await createTestApp(t);
    const rows =
      '=1+1,+1 Main St,-Town,NY,01/01/01\r\n' +
      '@SUM(A1),"=HYPERLINK(""http://x"",""y"")",Ok,CA,02/02/02\r\n';
    await importUsers(db, csvSource(`NAME,STREET,CITY,STATE,USER_DATE\n${rows}`), 'replace');
    const expected = `NAME,STREET,CITY,STATE,USER_DATE\r\n${rows}`;
    for (const request of [
      { url: '/api', headers: { accept: 'text/csv' } },
      { url: '/api?csv=plain' },
    ]) {
      const csv = await app.inject({ method: 'GET', ...request });
      assert.equal(csv.headers['content-type'], 'text/csv; charset=utf-8', request.url);
      assert.equal(csv.body, expected, request.url);
    }
    const copy = await createTestApp(t);
    await importUsers(copy.db, csvSource(expected), 'replace');
    assert.deepEqual(await copy.db.read(listUsers), await db.read(listUsers));
  });

  it('writes cells for spreadsheets with csv=spreadsheet: quoted, formulas shown as text', async (t) => {
    const { app, db } = await createTestApp(t);
    // TAB and CR cannot be imported any more; a table loaded before may still hold them.
    await db.replaceUsersTable(
      (insert) =>
        insert([
          { name: '=1+1', street: '+1 Main St', city: '-Town', state: 'NY', userDate: '01/01/01' },
          {
            name: '@SUM(A1)',
            street: '=HYPERLINK("http://x","y")',
            city: '\tTab',
            state: 'CA',
            userDate: '02/02/02',
          },
          {
            name: 'Jo "J" Smith',
            street: '\r1 Way',
            city: 'Zoë, Ville',
            state: 'TX',
            userDate: '03/03/03',
          },
        ]),
      { ifEmpty: false, keepPrevious: false },
    );
    // Whatever Accept says: a spreadsheet's own import (or a browser link) cannot set it.
    const csv = await app.inject({
      method: 'GET',
      url: '/api?csv=spreadsheet',
      headers: { accept: 'application/json' },
    });
    assert.equal(csv.statusCode, 200);
    assert.equal(csv.headers['content-type'], 'text/csv; charset=utf-8');
    assert.equal(
      csv.body,
      '\uFEFFNAME,STREET,CITY,STATE,USER_DATE\r\n' +
        `"'=1+1","'+1 Main St","'-Town","NY","01/01/01"\r\n` +
        `"'@SUM(A1)","'=HYPERLINK(""http://x"",""y"")","'\tTab","CA","02/02/02"\r\n` +
        `"Jo ""J"" Smith","'\r1 Way","Zoë, Ville","TX","03/03/03"\r\n`,
    );
    // Pages keep the profile in their next link.
    const page = await app.inject({
      method: 'GET',
      url: '/api?csv=spreadsheet&fields=ID,NAME&limit=1',
    });
    assert.equal(page.body, `\uFEFFID,NAME\r\n"1","'=1+1"\r\n`);
    assert.match(String(page.headers.link), /[?&]csv=spreadsheet[&>]/);

    const unknown = await app.inject({ method: 'GET', url: '/api?csv=excel' });
    assert.equal(unknown.statusCode, 400);
    assert.equal(unknown.headers['content-type'], PROBLEM_JSON);
    assert.match(
      unknown.json<{ detail: string }>().detail,
      /query parameter "csv" must be equal to one of the allowed values/,
    );
  });

  it('selects fields, and serves one user by id', async (t) => {
    const { app } = await createTestApp(t);
    await app.inject({ method: 'POST', url: '/addtosql' });
    const slim = await app.inject({ method: 'GET', url: '/api?fields=CITY,NAME&limit=1' });
    assert.equal(slim.body, '[{"NAME":"Duane Adams","CITY":"Zurmubku"}]');
    const one = await app.inject({ method: 'GET', url: '/api/users/2' });
    assert.equal(
      one.body,
      '{"ID":2,"NAME":"Ruby Hampton","STREET":"Seime Plaza","CITY":"Ikduju","STATE":"KS","USER_DATE":"16/09/86"}',
    );
    const missing = await app.inject({ method: 'GET', url: '/api/users/5000' });
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json<{ code: string }>().code, 'ERR_USER_NOT_FOUND');
  });

  it('refuses bad parameters with 400 problem+json naming the parameter', async (t) => {
    const { app } = await createTestApp(t);
    const cases: [string, RegExp][] = [
      ['/api?limit=0', /query parameter "limit"/],
      ['/api?limit=1001', /query parameter "limit"/],
      ['/api?limit=ten', /query parameter "limit"/],
      ['/api?sort=AGE', /query parameter "sort" must be equal to one of the allowed values/],
      ['/api?state=New+York', /query parameter "state"/],
      ['/api?fields=NAME,AGE', /query parameter "fields"/],
      ['/api?cursor=bm9wZQ', /query parameter "cursor"/],
      ['/api?name=', /query parameter "name"/],
      ['/api?state=NY&state=CA', /query parameter "state"/],
      ['/api?page=2', /unknown query parameter "page"/],
      ['/api/count?sort=NAME', /unknown query parameter "sort"/],
      ['/api/users/abc', /params parameter "id"|parameter "id"/],
    ];
    for (const [url, detail] of cases) {
      const response = await app.inject({ method: 'GET', url });
      assert.equal(response.statusCode, 400, url);
      assert.equal(response.headers['content-type'], PROBLEM_JSON, url);
      assert.match(response.json<{ detail: string }>().detail, detail, url);
      // Nothing is left to read of a request without a body: the connection stays open.
      assert.notEqual(response.headers.connection, 'close', url);
    }
    // A cursor made for one sort is refused by another.
    await app.inject({ method: 'POST', url: '/addtosql' });
    const page = await app.inject({ method: 'GET', url: '/api?sort=NAME&limit=1' });
    const cursor = /cursor=([^&>]+)/.exec(String(page.headers.link))?.[1];
    const mismatch = await app.inject({ method: 'GET', url: `/api?sort=CITY&cursor=${cursor}` });
    assert.equal(mismatch.statusCode, 400);
    assert.match(mismatch.json<{ detail: string }>().detail, /query parameter "cursor" belongs/);
  });
});

describe('OpenAPI and docs', () => {
  it('publishes an OpenAPI 3.1 document generated from the route schemas, and a docs page', async (t) => {
    const { app } = await createTestApp(t);
    const response = await app.inject({ method: 'GET', url: '/openapi.json' });
    assert.equal(response.statusCode, 200);
    const document = response.json<{
      openapi: string;
      paths: Record<string, Record<string, { parameters?: { name: string }[] }>>;
    }>();
    assert.equal(document.openapi, '3.1.0');
    for (const path of ['/api', '/api/count', '/api/users/{id}', '/healthcheck', '/addtosql']) {
      assert.ok(document.paths[path], `the document lacks ${path}`);
    }
    assert.deepEqual(
      document.paths['/api']?.get?.parameters?.map((parameter) => parameter.name).sort(),
      ['city', 'csv', 'cursor', 'fields', 'format', 'limit', 'name', 'q', 'sort', 'state'],
    );
    assert.equal(document.paths['/api']?.delete, undefined, '405 routes are hidden');

    const docs = await app.inject({ method: 'GET', url: '/docs/' });
    assert.equal(docs.statusCode, 200);
    assert.match(String(docs.headers['content-type']), /^text\/html/);
    const script = /src="\.\/static\/([^"]+\.js)"/.exec(docs.body)?.[1];
    assert.ok(script, docs.body);
    const asset = await app.inject({ method: 'GET', url: `/docs/static/${script}` });
    assert.equal(asset.statusCode, 200, 'the UI assets are served from the installed package');
  });
});
