import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { get, type IncomingMessage } from 'node:http';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { writeBackupStatus } from '../../src/backup/backup-status.js';
import { importUsers } from '../../src/importer/import-users.js';
import { fileImportSource } from '../../src/importer/import-source.js';
import type { StatusSnapshot } from '../../src/monitor/status-snapshot-schema.js';
import { REPO_ROOT } from '../helpers/paths.js';
import { buildApp } from '../../src/app.js';
import { isStatusRoute } from '../../src/http/status-routes.js';
import { createTestDatabase } from '../helpers/test-database.js';
import { createTestApp, testAppDependencies, type TestApp } from '../helpers/test-app.js';
import type { RawEnv } from '../../src/config/env.js';

const TOKEN = 'status-token-0123456789abcdef';
const basic = (user: string, password: string) =>
  `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** The real app on SQLite, listening on a free loopback port. */
async function listening(t: TestContext, env: RawEnv = {}): Promise<TestApp & { url: string }> {
  const test = await createTestApp(t, { STATUS_INTERVAL_MS: '250', ...env });
  // Real time: the traffic figures are rates over a real clock.
  test.clock.now = Date.now();
  const url = await test.app.listen({ port: 0, host: '127.0.0.1' });
  return { ...test, url };
}

interface EventStream {
  response: IncomingMessage;
  /** The next `event: status`, parsed. */
  next(): Promise<StatusSnapshot>;
  close(): void;
}

/** GET /status/events over a connection of its own, read event by event. */
function openEvents(url: string, headers: Record<string, string> = {}): Promise<EventStream> {
  return new Promise((resolve, reject) => {
    const request = get(`${url}/status/events`, { headers, agent: false }, (response) => {
      response.setEncoding('utf8');
      let buffered = '';
      const events: StatusSnapshot[] = [];
      const waiting: ((snapshot: StatusSnapshot) => void)[] = [];
      response.on('data', (chunk: string) => {
        buffered += chunk;
        let end: number;
        while ((end = buffered.indexOf('\n\n')) !== -1) {
          const block = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          if (!block.startsWith('event: status\n')) continue;
          const snapshot = JSON.parse(
            block.replace(/^event: status\ndata: /, ''),
          ) as StatusSnapshot;
          const waiter = waiting.shift();
          if (waiter === undefined) events.push(snapshot);
          else waiter(snapshot);
        }
      });
      resolve({
        response,
        next: () => {
          const ready = events.shift();
          return ready !== undefined
            ? Promise.resolve(ready)
            : new Promise((done) => waiting.push(done));
        },
        close: () => request.destroy(),
      });
    });
    request.on('error', reject);
  });
}

/** The next snapshot on `stream` for which `ready` holds (the stream sends one per interval). */
async function nextWhere(
  stream: EventStream,
  ready: (snapshot: StatusSnapshot) => boolean,
): Promise<StatusSnapshot> {
  for (;;) {
    const snapshot = await stream.next();
    if (ready(snapshot)) return snapshot;
  }
}

describe('GET /status.json and /status/events (SQLite, real HTTP)', () => {
  it('reports this instance, its database, data, imports, backups, problems and traffic', async (t) => {
    const { url, db, metrics } = await listening(t, { SERVER_NAME: 'webserver1' });
    const empty = (await (await fetch(`${url}/status.json`)).json()) as StatusSnapshot;
    assert.equal(empty.instance.name, 'webserver1');
    assert.equal(empty.instance.version, '1.2.3-test');
    assert.deepEqual(empty.databases, [
      {
        name: 'sqlite',
        role: 'sqlite',
        reachable: true,
        healthy: true,
        reason: null,
        lagSeconds: null,
      },
    ]);
    assert.equal(empty.data.rows, 0);
    assert.equal(empty.lastImport, null);
    assert.equal(empty.lastBackup, null);
    assert.equal(empty.haproxy, null);
    // The health JSON's own words for an empty table, not a rule of the status page's.
    assert.deepEqual(empty.problems, [
      'users table: the users table is empty: POST /addtosql or users-api import loads it',
    ]);

    await importUsers(
      db,
      fileImportSource(join(REPO_ROOT, 'data/users.csv'), 'csv', 'ERR_IMPORT_FILE_NOT_FOUND'),
      'if-empty',
      metrics.importFinished,
    );
    for (let i = 0; i < 20; i += 1) assert.equal((await fetch(`${url}/livez`)).status, 200);
    const response = await fetch(`${url}/status.json`);
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('cache-control'), 'no-store');
    const loaded = (await response.json()) as StatusSnapshot;
    assert.equal(loaded.data.rows, 1000);
    assert.ok(loaded.data.version !== null && loaded.data.version > empty.data.version!);
    assert.equal(loaded.lastImport?.outcome, 'imported');
    assert.equal(loaded.lastImport?.rows, 1000);
    assert.deepEqual(loaded.problems, []);
    assert.ok(loaded.traffic.requestsPerSecond > 0, JSON.stringify(loaded.traffic));
    assert.ok(loaded.traffic.p99Ms !== null && loaded.traffic.p99Ms > 0);
  });

  it('streams a snapshot at once and every interval; a new backup shows in the next one', async (t) => {
    const { url, config, clock } = await listening(t);
    const stream = await openEvents(url);
    t.after(() => stream.close());
    assert.equal(stream.response.statusCode, 200);
    assert.equal(stream.response.headers['content-type'], 'text/event-stream; charset=utf-8');
    assert.equal(stream.response.headers['cache-control'], 'no-store');
    const first = await stream.next();
    assert.equal(first.lastBackup, null);
    await mkdir(config.backupDir, { recursive: true });
    const file = join(config.backupDir, 'users-20250101T000000Z.ndjson.gz');
    await writeFile(file, 'x'.repeat(1234));
    const at = new Date(clock.now).toISOString();
    await writeBackupStatus(config.backupDir, { at, file, rows: 1000 });
    clock.now += 90_000;
    const later = await nextWhere(stream, (snapshot) => snapshot.lastBackup !== null);
    assert.deepEqual(later.lastBackup, {
      at,
      ageSeconds: 90,
      bytes: 1234,
      verified: true,
      rows: 1000,
    });
    assert.equal(Date.parse(later.at) - Date.parse(first.at), 90_000);
  });

  it('refuses the stream past STATUS_MAX_STREAMS with 503 problem+json, and frees a slot when a client leaves', async (t) => {
    const { url } = await listening(t, { STATUS_MAX_STREAMS: '2' });
    const streams = [await openEvents(url), await openEvents(url)];
    t.after(() => streams.forEach((stream) => stream.close()));
    await Promise.all(streams.map((stream) => stream.next()));
    const refused = await fetch(`${url}/status/events`);
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get('content-type'), 'application/problem+json; charset=utf-8');
    assert.equal(refused.headers.get('retry-after'), '5');
    assert.equal(((await refused.json()) as { code: string }).code, 'ERR_STATUS_STREAMS_BUSY');

    streams[0]!.close();
    // The slot is free once the server has seen the close: a new stream gets in then.
    let again: EventStream | undefined;
    for (let attempt = 0; again === undefined; attempt += 1) {
      const candidate = await openEvents(url);
      if (candidate.response.statusCode === 200) again = candidate;
      else {
        candidate.close();
        assert.ok(attempt < 100, 'the closed stream never gave its slot back');
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    t.after(() => again.close());
    assert.ok((await again.next()).at);
  });

  it('ends open streams when the app closes', async (t) => {
    const { url, app } = await listening(t);
    const stream = await openEvents(url);
    await stream.next();
    const ended = new Promise((resolve) => stream.response.on('end', resolve));
    await app.close();
    await ended;
  });

  it('needs METRICS_TOKEN when one is set: Bearer, or HTTP Basic with any user name', async (t) => {
    const { url } = await listening(t, { METRICS_TOKEN: TOKEN });
    for (const path of ['/status.json', '/status/events']) {
      for (const authorization of [
        undefined,
        'Bearer wrong-token-0123456789',
        basic('operator', 'wrong-token-0123456789'),
        basic('operator', ''),
        `Basic ${Buffer.from(TOKEN).toString('base64')}`, // no colon: no password
        'Basic !!!',
      ]) {
        const refused = await fetch(`${url}${path}`, {
          headers: authorization === undefined ? {} : { authorization },
        });
        const what = `${path} ${authorization ?? '(none)'}`;
        assert.equal(refused.status, 401, what);
        assert.equal(
          refused.headers.get('www-authenticate'),
          'Basic realm="users-api status", charset="UTF-8"',
          what,
        );
        assert.equal(
          refused.headers.get('content-type'),
          'application/problem+json; charset=utf-8',
        );
        assert.equal(
          ((await refused.json()) as { code: string }).code,
          'ERR_AUTH_METRICS_TOKEN_REQUIRED',
        );
      }
    }
    for (const authorization of [`Bearer ${TOKEN}`, basic('', TOKEN), basic('anyone', TOKEN)]) {
      const allowed = await fetch(`${url}/status.json`, { headers: { authorization } });
      assert.equal(allowed.status, 200, authorization);
      await allowed.json();
    }
    const stream = await openEvents(url, { authorization: basic('operator', TOKEN) });
    t.after(() => stream.close());
    assert.equal(stream.response.statusCode, 200);
    assert.ok((await stream.next()).instance);
    // /metrics takes the same login, so one browser login reads both.
    const metrics = await fetch(`${url}/metrics`, {
      headers: { authorization: basic('operator', TOKEN) },
    });
    assert.equal(metrics.status, 200);
    await metrics.text();
  });

  it('refuses other methods and unknown query parameters', async (t) => {
    const { url } = await listening(t);
    const posted = await fetch(`${url}/status.json`, { method: 'POST' });
    assert.equal(posted.status, 405);
    assert.equal(posted.headers.get('allow'), 'GET, HEAD');
    await posted.text();
    const query = await fetch(`${url}/status.json?x=1`);
    assert.equal(query.status, 400);
    await query.text();
  });

  it('is described in the OpenAPI document', async (t) => {
    const { app } = await createTestApp(t);
    const document = (await app.inject({ method: 'GET', url: '/openapi.json' })).json<{
      paths: Record<
        string,
        Record<
          string,
          {
            responses: Record<
              string,
              { content: Record<string, { schema: { properties?: object } }> }
            >;
          }
        >
      >;
    }>();
    const json = document.paths['/status.json']?.get?.responses['200']?.content;
    assert.deepEqual(Object.keys(json?.['application/json']?.schema.properties ?? {}), [
      'at',
      'instance',
      'databases',
      'data',
      'lastImport',
      'lastBackup',
      'problems',
      'haproxy',
      'traffic',
    ]);
    const events = document.paths['/status/events']?.get?.responses;
    assert.ok(events?.['200']?.content['text/event-stream'], JSON.stringify(events));
    assert.ok(events['503'] && events['401']);
  });

  it('guards every route under /status that the app registers, the page and its assets too', async (t) => {
    const database = await createTestDatabase(t, { METRICS_TOKEN: TOKEN });
    const app = buildApp(testAppDependencies(database.config, database.db));
    t.after(() => app.close());
    // Routes are added when the app loads its plugins: a root hook sees every one of them.
    const statusRoutes: string[] = [];
    app.addHook('onRoute', (route) => {
      const methods = [route.method].flat();
      if (isStatusRoute(route.url) && methods.includes('GET')) statusRoutes.push(route.url);
    });
    await app.ready();
    assert.ok(statusRoutes.includes('/status.json') && statusRoutes.includes('/status/events'));
    for (const route of statusRoutes) {
      const url = route.replace(/\*$/, 'status.js').replace(/:[A-Za-z]+/g, 'x');
      const refused = await app.inject({ method: 'GET', url });
      assert.equal(refused.statusCode, 401, `${route} without the token`);
      assert.equal(
        refused.headers['www-authenticate'],
        'Basic realm="users-api status", charset="UTF-8"',
      );
    }
  });
});
