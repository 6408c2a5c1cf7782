import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type OutgoingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { pino } from 'pino';
import { createApiCache } from '../../src/http/api-cache.js';
import { createFastPath } from '../../src/http/fast-path.js';
import { createReadiness } from '../../src/http/health-routes.js';
import { createRequestAccounting } from '../../src/http/request-accounting.js';
import { createMetrics } from '../../src/metrics/create-metrics.js';
import { eventually } from '../helpers/mariadb.js';
import { createTestApp } from '../helpers/test-app.js';
import { createTestDatabase } from '../helpers/test-database.js';

/** Headers that differ per response or per connection, whoever answers. */
const PER_RESPONSE = new Set(['date', 'x-request-id', 'connection', 'keep-alive']);

interface Answer {
  status: number;
  headers: Record<string, string>;
  body: string;
}

function get(url: string, headers: OutgoingHttpHeaders = {}, method = 'GET'): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const client = httpRequest(url, { method, headers, agent: false }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () =>
        resolve({
          status: response.statusCode ?? 0,
          headers: Object.fromEntries(
            Object.entries(response.headers).map(([name, value]) => [name, String(value)]),
          ),
          body,
        }),
      );
    });
    client.on('error', reject);
    client.end();
  });
}

function comparable(headers: Record<string, string | number | string[] | undefined>) {
  return Object.fromEntries(
    Object.entries(headers)
      .filter(([name]) => !PER_RESPONSE.has(name))
      .map(([name, value]) => [name, String(value)]),
  );
}

/** The fast path alone on a real server; whatever it leaves answers 599. */
async function fastPathServer(t: TestContext) {
  const { db } = await createTestDatabase(t, { API_CACHE_CHECK_MS: '60000' });
  await db.write
    .insertInto('users')
    .values({
      name: 'Ann',
      street: '1 Main St',
      city: 'Albany',
      state: 'NY',
      user_date: '01/02/03',
    })
    .execute();
  const apiCache = createApiCache({ db, maxBytes: 1 << 20, checkMs: 60_000 });
  const readiness = createReadiness({ db, now: Date.now });
  const lifecycle = { draining: false };
  const metrics = createMetrics({ processMetrics: false });
  const fastPath = createFastPath({
    apiCache,
    readiness,
    serverName: 'fast',
    isStopping: () => lifecycle.draining,
    accounting: createRequestAccounting(metrics, pino({ level: 'silent' })),
  });
  const server = createServer((request, response) => {
    if (fastPath(request, response)) return;
    response.writeHead(599).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { url, apiCache, readiness, lifecycle, metrics };
}

describe('fast path for GET /api and GET /healthcheck', () => {
  it('answers exactly as the app does: status, headers and bytes', async (t) => {
    // A long check interval keeps the cached body and the readiness read fresh for the test.
    const { app } = await createTestApp(t, { API_CACHE_CHECK_MS: '60000' });
    await app.inject({ method: 'POST', url: '/addtosql' });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });
    for (const path of ['/api', '/healthcheck']) {
      await get(`${url}${path}`); // fills the cache / the readiness read through the app
      const overHttp = await get(`${url}${path}`, { 'x-request-id': 'fast-1' });
      const throughApp = await app.inject({ method: 'GET', url: path });
      assert.equal(overHttp.status, throughApp.statusCode, path);
      assert.deepEqual(comparable(overHttp.headers), comparable(throughApp.headers), path);
      assert.equal(overHttp.body, throughApp.body, path);
      assert.equal(overHttp.headers['x-request-id'], 'fast-1');
      assert.match(String(throughApp.headers['x-request-id']), /^[0-9a-f]{12}-[0-9a-z]+$/);
    }
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(
      metrics,
      /^http_request_duration_seconds_count\{method="GET",route="\/api",status="200"\} [2-9]$/m,
    );
  });

  it('answers only the plain cases from memory and leaves everything else to the app', async (t) => {
    const { url, apiCache, readiness, lifecycle, metrics } = await fastPathServer(t);
    // Nothing in memory yet: the app reads.
    assert.equal((await get(`${url}/api`)).status, 599);
    assert.equal((await get(`${url}/healthcheck`)).status, 599);
    await apiCache.current();
    await readiness.check(pino({ level: 'silent' }));

    const api = await get(`${url}/api`);
    assert.equal(api.status, 200);
    assert.deepEqual(JSON.parse(api.body), [
      { NAME: 'Ann', STREET: '1 Main St', CITY: 'Albany', STATE: 'NY', USER_DATE: '01/02/03' },
    ]);
    assert.equal(api.headers['content-type'], 'application/json; charset=utf-8');
    assert.match(api.headers.etag ?? '', /^"v\d+-/);
    assert.equal((await get(`${url}/api`, { accept: '*/*' })).status, 200);
    const health = await get(`${url}/healthcheck`);
    assert.deepEqual([health.status, health.body], [200, 'all good from fast']);

    for (const [path, headers, method] of [
      ['/api?state=NY', {}, 'GET'],
      ['/api/', {}, 'GET'],
      ['/api', { 'accept-encoding': 'gzip' }, 'GET'],
      ['/api', { 'if-none-match': api.headers.etag ?? '*' }, 'GET'],
      ['/api', { accept: 'text/csv' }, 'GET'],
      ['/api', {}, 'HEAD'],
      ['/healthcheck?format=json', {}, 'GET'],
      ['/healthcheck', { accept: 'application/health+json' }, 'GET'],
      ['/livez', {}, 'GET'],
    ] as const) {
      const answer = await get(`${url}${path}`, headers, method);
      assert.equal(answer.status, 599, `${method} ${path} ${JSON.stringify(headers)}`);
    }
    lifecycle.draining = true;
    assert.equal((await get(`${url}/healthcheck`)).status, 599);
    assert.equal((await get(`${url}/api`)).status, 599);

    // Counted like any request, once the response is done.
    await eventually(
      async () =>
        /^http_request_duration_seconds_count\{method="GET",route="\/healthcheck",status="200"\} 1$/m.test(
          await metrics.render(),
        ),
      'the fast-path answer is counted',
    );
  });
});
