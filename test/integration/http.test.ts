import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { sql } from 'kysely';
import { countUsers, listUsers } from '../../src/db/users-repository.js';
import { USER_FIELDS } from '../../src/users/user.js';
import { fixture, REPO_ROOT } from '../helpers/paths.js';
import { createTestApp } from '../helpers/test-app.js';

const TOKEN = 'test-admin-token-0123456789';
const SAMPLE = join(REPO_ROOT, 'data/users.csv');
const PROBLEM_JSON = 'application/problem+json; charset=utf-8';

describe('GET /api', () => {
  it('returns every user in load order with exactly the seed keys', async (t) => {
    const { app } = await createTestApp(t);
    await app.inject({ method: 'POST', url: '/addtosql' });
    const response = await app.inject({ method: 'GET', url: '/api' });
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers['content-type'], 'application/json; charset=utf-8');
    assert.ok(
      response.body.startsWith(
        '[{"NAME":"Duane Adams","STREET":"Hojzi Path","CITY":"Zurmubku","STATE":"NY","USER_DATE":"08/08/43"},' +
          '{"NAME":"Ruby Hampton","STREET":"Seime Plaza","CITY":"Ikduju","STATE":"KS","USER_DATE":"16/09/86"},' +
          '{"NAME":"Carl Johnson","STREET":"Zopwe Drive","CITY":"Ehazeru","STATE":"RI","USER_DATE":"27/11/64"},',
      ),
    );
    const users = response.json<Record<string, string>[]>();
    assert.equal(users.length, 1000);
    for (const user of users)
      assert.deepEqual(Object.keys(user), ['NAME', 'STREET', 'CITY', 'STATE', 'USER_DATE']);
    // every value exactly as in the CSV (the sample needs no quoting or trimming)
    const lines = (await readFile(SAMPLE, 'utf8')).trimEnd().split('\n').slice(1);
    assert.deepEqual(
      users.map((u) => Object.values(u).join(',')),
      lines,
    );
  });

  it('preserves UTF-8 text', async (t) => {
    const { app } = await createTestApp(t);
    await app.inject({
      method: 'POST',
      url: '/addtosql',
      headers: { 'content-type': 'application/json' },
      payload: await readFile(fixture('json/users.json')),
    });
    const response = await app.inject({ method: 'GET', url: '/api' });
    assert.equal(response.json<{ NAME: string }[]>()[1]!.NAME, 'Zoë Ødegård');
  });

  it('returns [] for an empty table', async (t) => {
    const { app } = await createTestApp(t);
    const response = await app.inject({ method: 'GET', url: '/api' });
    assert.equal(response.statusCode, 200);
    assert.equal(response.body, '[]');
  });

  it('rejects unknown query parameters with 400 naming them', async (t) => {
    const { app } = await createTestApp(t);
    const response = await app.inject({ method: 'GET', url: '/api?colour=red' });
    assert.equal(response.statusCode, 400);
    assert.equal(response.headers['content-type'], PROBLEM_JSON);
    assert.equal(response.json<{ detail: string }>().detail, 'unknown query parameter "colour"');
  });

  it('answers 405 with Allow for other methods', async (t) => {
    const { app } = await createTestApp(t);
    const response = await app.inject({ method: 'DELETE', url: '/api' });
    assert.equal(response.statusCode, 405);
    assert.equal(response.headers.allow, 'GET, HEAD');
  });

  it('answers 503 problem+json when the users table is gone', async (t) => {
    const { app, db } = await createTestApp(t);
    await sql`drop table users`.execute(db.write);
    const response = await app.inject({ method: 'GET', url: '/api' });
    assert.equal(response.statusCode, 503);
    assert.deepEqual(response.json(), {
      type: 'urn:users-api:problem:ERR_DB_UNAVAILABLE',
      title: 'Database unavailable',
      status: 503,
      detail: 'the database cannot be reached; try again shortly',
      code: 'ERR_DB_UNAVAILABLE',
    });
  });
});

describe('health routes', () => {
  it('/healthcheck says all good from SERVER_NAME', async (t) => {
    const { app } = await createTestApp(t, { SERVER_NAME: 'webserver1' });
    const response = await app.inject({ method: 'GET', url: '/healthcheck' });
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(response.body, 'all good from webserver1');
  });

  it('/healthcheck answers 503 with a one-line reason when the database cannot be read', async (t) => {
    const { app, db } = await createTestApp(t);
    await sql`drop table users`.execute(db.write);
    const response = await app.inject({ method: 'GET', url: '/healthcheck' });
    assert.equal(response.statusCode, 503);
    assert.equal(response.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(response.body, 'database unavailable: cannot read the users table');
  });

  it('/livez answers without touching the database', async (t) => {
    const { app, db } = await createTestApp(t);
    await db.close();
    const response = await app.inject({ method: 'GET', url: '/livez' });
    assert.equal(response.statusCode, 200);
    assert.equal(response.body, 'ok');
  });

  it('echoes a valid X-Request-Id and makes one up otherwise', async (t) => {
    const { app } = await createTestApp(t);
    const given = await app.inject({
      method: 'GET',
      url: '/livez',
      headers: { 'x-request-id': 'abc-123' },
    });
    assert.equal(given.headers['x-request-id'], 'abc-123');
    const made = await app.inject({
      method: 'GET',
      url: '/livez',
      headers: { 'x-request-id': 'bad id\u0001' },
    });
    const madeAgain = await app.inject({ method: 'GET', url: '/livez' });
    const ids = [made, madeAgain].map((response) => String(response.headers['x-request-id']));
    for (const id of ids) assert.match(id, /^[0-9a-f]{12}-[0-9a-z]+$/);
    assert.notEqual(ids[0], ids[1]);
    assert.equal(ids[0]?.split('-')[0], ids[1]?.split('-')[0], 'one prefix per process');
  });

  it('answers unknown routes with 404 problem+json', async (t) => {
    const { app } = await createTestApp(t);
    const response = await app.inject({ method: 'GET', url: '/users?x=1' });
    assert.equal(response.statusCode, 404);
    assert.equal(response.headers['content-type'], PROBLEM_JSON);
    assert.equal(response.json<{ detail: string }>().detail, 'no route for GET /users');
  });
});

describe('POST /addtosql', () => {
  it('imports DATA_FILE into an empty table, then skips', async (t) => {
    const { app } = await createTestApp(t);
    const first = await app.inject({ method: 'POST', url: '/addtosql' });
    assert.equal(first.statusCode, 200);
    assert.equal(first.body, '{"status":"imported","rows":1000}');
    const second = await app.inject({ method: 'POST', url: '/addtosql' });
    assert.equal(second.body, '{"status":"skipped","reason":"table not empty","rows":1000}');
  });

  it('leaves exactly one copy after 20 simultaneous calls', async (t) => {
    const { app, db } = await createTestApp(t);
    const responses = await Promise.all(
      Array.from({ length: 20 }, () => app.inject({ method: 'POST', url: '/addtosql' })),
    );
    const statuses = responses.map((r) => r.json<{ status: string }>().status).sort();
    assert.deepEqual(statuses, ['imported', ...Array<string>(19).fill('skipped')]);
    assert.equal(await db.read(countUsers), 1000);
  });

  it('answers GET with 405, Allow: POST and a problem that says to use POST', async (t) => {
    const { app } = await createTestApp(t);
    const response = await app.inject({ method: 'GET', url: '/addtosql' });
    assert.equal(response.statusCode, 405);
    assert.equal(response.headers.allow, 'POST');
    assert.equal(response.headers['content-type'], PROBLEM_JSON);
    assert.deepEqual(response.json(), {
      type: 'urn:users-api:problem:ERR_HTTP_METHOD_NOT_ALLOWED',
      title: 'Method not allowed',
      status: 405,
      detail: 'GET is not supported on /addtosql; use POST',
      code: 'ERR_HTTP_METHOD_NOT_ALLOWED',
    });
  });

  it('answers 500 problem+json without a path when DATA_FILE is missing', async (t) => {
    const { app } = await createTestApp(t, { DATA_FILE: '/nonexistent/users.csv' });
    const response = await app.inject({ method: 'POST', url: '/addtosql' });
    assert.equal(response.statusCode, 500);
    assert.equal(response.json<{ code: string }>().code, 'ERR_IMPORT_DATA_FILE_MISSING');
  });

  it('rejects an unknown mode with 400', async (t) => {
    const { app } = await createTestApp(t);
    const response = await app.inject({ method: 'POST', url: '/addtosql?mode=merge' });
    assert.equal(response.statusCode, 400);
    assert.equal(
      response.json<{ detail: string }>().detail,
      'query parameter "mode" must be equal to one of the allowed values: if-empty, append, replace',
    );
  });

  describe('uploads (admin)', () => {
    const csv = (
      body: string | Buffer,
      url = '/addtosql?mode=append',
      headers: Record<string, string> = {},
    ) => ({
      method: 'POST' as const,
      url,
      headers: { 'content-type': 'text/csv', authorization: `Bearer ${TOKEN}`, ...headers },
      payload: body,
    });

    it('imports a CSV body with the admin token, in each mode', async (t) => {
      const { app, db } = await createTestApp(t, { ADMIN_TOKEN: TOKEN });
      const body = await readFile(fixture('csv/crlf.csv'));
      assert.equal(
        (await app.inject(csv(body, '/addtosql'))).body,
        '{"status":"imported","rows":2}',
      );
      assert.equal(
        (await app.inject(csv(body, '/addtosql?mode=if-empty'))).json<{ status: string }>().status,
        'skipped',
      );
      assert.equal(
        (await app.inject(csv(body, '/addtosql?mode=append'))).body,
        '{"status":"imported","rows":2}',
      );
      assert.equal(await db.read(countUsers), 4);
      const replaced = await app.inject(
        csv(await readFile(fixture('csv/quoted-comma.csv')), '/addtosql?mode=replace'),
      );
      assert.equal(replaced.body, '{"status":"imported","rows":1}');
      assert.deepEqual(
        (await db.read(listUsers)).map((u) => u.name),
        ['Adams, Duane'],
      );
    });

    it('imports JSON and NDJSON bodies', async (t) => {
      const { app, db } = await createTestApp(t, { ADMIN_TOKEN: TOKEN });
      const json = await app.inject(
        csv(await readFile(fixture('json/users.json')), undefined, {
          'content-type': 'application/json',
        }),
      );
      assert.equal(json.body, '{"status":"imported","rows":2}');
      const ndjson = await app.inject(
        csv(await readFile(fixture('json/users.ndjson')), undefined, {
          'content-type': 'application/x-ndjson; charset=utf-8',
        }),
      );
      assert.equal(ndjson.body, '{"status":"imported","rows":2}');
      assert.equal(await db.read(countUsers), 4);
    });

    it('needs the token: 401 without it or with a wrong one, and nothing changes', async (t) => {
      const { app, db } = await createTestApp(t, { ADMIN_TOKEN: TOKEN });
      const body = await readFile(fixture('csv/crlf.csv'));
      for (const authorization of ['', 'Bearer wrong-token-0123456789', `Basic ${TOKEN}`]) {
        const response = await app.inject(csv(body, undefined, { authorization }));
        assert.equal(response.statusCode, 401, authorization);
        assert.equal(response.headers['www-authenticate'], 'Bearer');
        assert.equal(response.json<{ code: string }>().code, 'ERR_AUTH_REQUIRED');
      }
      // a mode other than if-empty is admin too, even without a body
      assert.equal(
        (await app.inject({ method: 'POST', url: '/addtosql?mode=replace' })).statusCode,
        401,
      );
      assert.equal(await db.read(countUsers), 0);
    });

    it('without a configured token: accepted from loopback, refused from elsewhere or through a proxy', async (t) => {
      const { app, db } = await createTestApp(t);
      const body = await readFile(fixture('csv/crlf.csv'));
      const fromRemote = await app.inject({ ...csv(body), remoteAddress: '10.1.2.3' });
      assert.equal(fromRemote.statusCode, 403);
      assert.equal(fromRemote.json<{ code: string }>().code, 'ERR_AUTH_FORBIDDEN');
      const proxied = await app.inject(csv(body, undefined, { 'x-forwarded-for': '203.0.113.9' }));
      assert.equal(proxied.statusCode, 403);
      assert.equal(await db.read(countUsers), 0);
      const local = await app.inject({ ...csv(body), remoteAddress: '::1' });
      assert.equal(local.statusCode, 200);
    });

    it('refuses a body over MAX_UPLOAD_BYTES with 413, by Content-Length or while streaming', async (t) => {
      const { app, db } = await createTestApp(t, { ADMIN_TOKEN: TOKEN, MAX_UPLOAD_BYTES: '100' });
      const body = await readFile(fixture('csv/crlf.csv')); // 124 bytes
      const declared = await app.inject(csv(body));
      assert.equal(declared.statusCode, 413);
      assert.equal(declared.json<{ code: string }>().code, 'ERR_UPLOAD_TOO_LARGE');
      // chunked: no Content-Length, the limit is enforced on the bytes received
      const chunks = Readable.from([body.subarray(0, 60), body.subarray(60)]) as unknown as Buffer;
      const streamed = await app.inject(csv(chunks, undefined, { 'transfer-encoding': 'chunked' }));
      assert.equal(streamed.statusCode, 413);
      assert.equal(await db.read(countUsers), 0);
    });

    it('refuses an unsupported media type with 415', async (t) => {
      const { app } = await createTestApp(t, { ADMIN_TOKEN: TOKEN });
      const response = await app.inject(
        csv('<users/>', undefined, { 'content-type': 'application/xml' }),
      );
      assert.equal(response.statusCode, 415);
      assert.equal(
        response.json<{ detail: string }>().detail,
        'cannot import application/xml; send text/csv, application/json, application/x-ndjson',
      );
    });

    it('answers 422 with every bad line and imports nothing', async (t) => {
      const { app, db } = await createTestApp(t, { ADMIN_TOKEN: TOKEN });
      await app.inject({ method: 'POST', url: '/addtosql' });
      const response = await app.inject(
        csv(await readFile(fixture('csv/several-bad-rows.csv')), '/addtosql?mode=replace'),
      );
      assert.equal(response.statusCode, 422);
      assert.equal(response.headers['content-type'], PROBLEM_JSON);
      assert.deepEqual(response.json(), {
        type: 'urn:users-api:problem:ERR_IMPORT_BAD_ROWS',
        title: 'Import rejected: bad rows',
        status: 422,
        detail: '2 bad rows; nothing was imported',
        code: 'ERR_IMPORT_BAD_ROWS',
        errors: [
          'line 2: expected 5 fields (NAME,STREET,CITY,STATE,USER_DATE), found 4',
          'line 3: STREET: must not be empty',
          'line 3: STATE: "XX" is not a US state, DC or territory code (e.g. NY)',
          'line 3: USER_DATE: "1/1/86" is not a date in dd/mm/yy form',
        ],
      });
      assert.equal(await db.read(countUsers), 1000);
    });

    it('refuses control characters in CSV, JSON and NDJSON, naming each row and field', async (t) => {
      const { app, db } = await createTestApp(t, { ADMIN_TOKEN: TOKEN });
      await app.inject({ method: 'POST', url: '/addtosql' });
      const good = ['Duane Adams', 'Hojzi Path', 'Zurmubku', 'NY', '08/08/43'];
      const bad = ['Nul\u0000Name', 'Esc\u001b[2J Path', 'Tab\tTown', 'NY', '08/08/43'];
      const object = (row: string[]) =>
        JSON.stringify(Object.fromEntries(row.map((value, i) => [USER_FIELDS[i]!, value])));
      const bodies: [string, string, string][] = [
        [
          'text/csv',
          `${USER_FIELDS.join(',')}\n${good.join(',')}\n"${bad.join('","')}"\n`,
          'line 3',
        ],
        ['application/json', `[${object(good)},${object(bad)}]`, 'item 2'],
        ['application/x-ndjson', `${object(good)}\n${object(bad)}\n`, 'item 2'],
      ];
      for (const [type, body, location] of bodies) {
        const response = await app.inject(
          csv(body, '/addtosql?mode=replace', { 'content-type': type }),
        );
        assert.equal(response.statusCode, 422, type);
        assert.deepEqual(
          response.json<{ code: string; errors: string[] }>(),
          {
            type: 'urn:users-api:problem:ERR_IMPORT_BAD_ROWS',
            title: 'Import rejected: bad rows',
            status: 422,
            detail: '1 bad row; nothing was imported',
            code: 'ERR_IMPORT_BAD_ROWS',
            errors: [
              `${location}: NAME: contains the control character U+0000 at character 4`,
              `${location}: STREET: contains the control character U+001B at character 4`,
              `${location}: CITY: contains the control character U+0009 at character 4`,
            ],
          },
          type,
        );
      }
      assert.equal(await db.read(countUsers), 1000);
    });

    for (const [name, code] of [
      ['csv/empty.csv', 'ERR_IMPORT_BAD_FILE'],
      ['csv/header-only.csv', 'ERR_IMPORT_NO_ROWS'],
      ['csv/latin1.csv', 'ERR_IMPORT_BAD_FILE'],
      ['csv/binary.csv', 'ERR_IMPORT_BAD_FILE'],
      ['csv/missing-column.csv', 'ERR_IMPORT_BAD_FILE'],
      ['csv/extra-column.csv', 'ERR_IMPORT_BAD_FILE'],
      ['csv/unclosed-quote.csv', 'ERR_IMPORT_BAD_FILE'],
    ] as const) {
      it(`answers 422 ${code} for ${name}`, async (t) => {
        const { app, db } = await createTestApp(t, { ADMIN_TOKEN: TOKEN });
        const response = await app.inject(
          csv(await readFile(fixture(name)), '/addtosql?mode=replace'),
        );
        assert.equal(response.statusCode, 422);
        assert.equal(response.json<{ code: string }>().code, code);
        assert.equal(await db.read(countUsers), 0);
      });
    }
  });
});
