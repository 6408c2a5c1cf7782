import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { sql } from 'kysely';
import { openDatabase } from '../../src/db/open-database.js';
import { countUsers } from '../../src/db/users-repository.js';
import { createMetrics } from '../../src/metrics/create-metrics.js';
import { fixture } from '../helpers/paths.js';
import { createTestApp } from '../helpers/test-app.js';
import { createTestDatabase } from '../helpers/test-database.js';

const TOKEN = 'test-metrics-token-0123456789';

/** The value of one sample line (`name{labels} value`), or undefined when absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

export const SERVICE_METRICS = {
  http_request_duration_seconds: 'histogram',
  http_requests_in_flight: 'gauge',
  users_db_replica_healthy: 'gauge',
  users_db_replica_lag_seconds: 'gauge',
  users_db_reads_routed_to_primary_total: 'counter',
  users_db_query_duration_seconds: 'histogram',
  users_db_errors_total: 'counter',
  users_db_pool_connections_in_use: 'gauge',
  users_rows: 'gauge',
  users_imports_total: 'counter',
  users_imported_rows_total: 'counter',
  users_backup_last_success_timestamp_seconds: 'gauge',
} as const;

describe('GET /metrics', () => {
  it('exports every documented metric with HELP and TYPE', async (t) => {
    const { app } = await createTestApp(t);
    const response = await app.inject({ method: 'GET', url: '/metrics' });
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
    for (const [name, type] of Object.entries(SERVICE_METRICS)) {
      assert.match(response.body, new RegExp(`^# HELP ${name} \\S`, 'm'), name);
      assert.match(response.body, new RegExp(`^# TYPE ${name} ${type}$`, 'm'), name);
    }
    // Replica series appear once the replica router reports; SQLite has none, and no limit.
    assert.doesNotMatch(response.body, /^users_db_replica_healthy\{/m);
    assert.doesNotMatch(response.body, /users_db_replica_max_lag_seconds/);
  });

  it('counts requests by method, route template and status, and the one in flight', async (t) => {
    const { app } = await createTestApp(t);
    await app.inject({ method: 'GET', url: '/api' });
    await app.inject({ method: 'GET', url: '/api' });
    await app.inject({ method: 'GET', url: '/api?colour=red' });
    await app.inject({ method: 'GET', url: '/no/such/page/12345' });
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    const count = (labels: string) =>
      sample(text, `http_request_duration_seconds_count{${labels}}`);
    assert.equal(count('method="GET",route="/api",status="200"'), 2);
    assert.equal(count('method="GET",route="/api",status="400"'), 1);
    assert.equal(count('method="GET",route="unmatched",status="404"'), 1);
    assert.doesNotMatch(text, /no\/such\/page/);
    // The scrape itself is the only request in flight.
    assert.equal(sample(text, 'http_requests_in_flight'), 1);
  });

  it('reports the users row count and imports by result', async (t) => {
    const { app } = await createTestApp(t, { ADMIN_TOKEN: 'test-admin-token-0123456789' });
    const before = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.equal(sample(before, 'users_rows'), 0);
    assert.equal(sample(before, 'users_imports_total{result="imported"}'), 0);

    await app.inject({ method: 'POST', url: '/addtosql' });
    await app.inject({ method: 'POST', url: '/addtosql' });
    await app.inject({
      method: 'POST',
      url: '/addtosql?mode=append',
      headers: {
        'content-type': 'text/csv',
        authorization: 'Bearer test-admin-token-0123456789',
      },
      payload: await readFile(fixture('csv/bad-state.csv')),
    });
    const text = (await app.inject({ method: 'GET', url: '/metrics' })).body;
    assert.equal(sample(text, 'users_rows'), 1000);
    assert.equal(sample(text, 'users_imports_total{result="imported"}'), 1);
    assert.equal(sample(text, 'users_imports_total{result="skipped"}'), 1);
    assert.equal(sample(text, 'users_imports_total{result="rejected"}'), 1);
    assert.equal(sample(text, 'users_imports_total{result="failed"}'), 0);
    assert.equal(sample(text, 'users_imported_rows_total'), 1000);
  });

  it('needs the bearer token when METRICS_TOKEN is set', async (t) => {
    const { app } = await createTestApp(t, { METRICS_TOKEN: TOKEN });
    for (const authorization of [undefined, 'Bearer wrong-token-0123456789']) {
      const refused = await app.inject({
        method: 'GET',
        url: '/metrics',
        headers: authorization === undefined ? {} : { authorization },
      });
      assert.equal(refused.statusCode, 401);
      assert.equal(refused.headers['www-authenticate'], 'Bearer');
      assert.equal(refused.json<{ code: string }>().code, 'ERR_AUTH_METRICS_TOKEN_REQUIRED');
    }
    const allowed = await app.inject({
      method: 'GET',
      url: '/metrics',
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(allowed.statusCode, 200);
    assert.match(allowed.body, /^# TYPE users_rows gauge$/m);
  });

  it('times every SQLite query by operation and counts failures', async (t) => {
    const { config } = await createTestDatabase(t);
    const metrics = createMetrics({ processMetrics: false });
    const db = openDatabase(config.database, { create: false, observer: metrics.db });
    t.after(() => db.close());
    await db.read(countUsers);
    await db.read(countUsers);
    await sql`drop table users`.execute(db.write);
    await assert.rejects(db.read(countUsers));
    const text = await metrics.render();
    const count = (operation: string) =>
      sample(
        text,
        `users_db_query_duration_seconds_count{target="primary",operation="${operation}"}`,
      );
    assert.equal(count('read'), 3);
    assert.equal(count('write'), 1);
    assert.equal(sample(text, 'users_db_errors_total{target="primary"}'), 1);
  });

  it('keeps replica series for the router to set, and backup time', () => {
    const metrics = createMetrics({ processMetrics: false });
    metrics.db.replicaChecked('replica1', true, 0.5);
    metrics.db.replicaChecked('replica2', false, undefined);
    metrics.db.readRoutedToPrimary();
    metrics.db.poolConnectionsInUse('primary', 3);
    metrics.backupSucceeded(new Date(Date.UTC(2025, 0, 1)));
    return metrics.render().then((text) => {
      assert.equal(sample(text, 'users_db_replica_healthy{replica="replica1"}'), 1);
      assert.equal(sample(text, 'users_db_replica_healthy{replica="replica2"}'), 0);
      assert.equal(sample(text, 'users_db_replica_lag_seconds{replica="replica1"}'), 0.5);
      assert.equal(sample(text, 'users_db_replica_lag_seconds{replica="replica2"}'), undefined);
      assert.equal(sample(text, 'users_db_reads_routed_to_primary_total'), 1);
      assert.equal(sample(text, 'users_db_pool_connections_in_use{target="primary"}'), 3);
      assert.equal(sample(text, 'users_backup_last_success_timestamp_seconds'), 1735689600);
    });
  });

  it('exports the replica lag limit only when the database has replicas', async () => {
    const withReplicas = await createMetrics({
      processMetrics: false,
      replicaMaxLagSeconds: 5,
    }).render();
    assert.match(withReplicas, /^# TYPE users_db_replica_max_lag_seconds gauge$/m);
    assert.equal(sample(withReplicas, 'users_db_replica_max_lag_seconds'), 5);
    const without = await createMetrics({ processMetrics: false }).render();
    assert.doesNotMatch(without, /users_db_replica_max_lag_seconds/);
  });

  it('answers other methods with 405', async (t) => {
    const { app } = await createTestApp(t);
    const response = await app.inject({ method: 'POST', url: '/metrics' });
    assert.equal(response.statusCode, 405);
    assert.equal(response.headers.allow, 'GET, HEAD');
  });
});

describe('GET /healthcheck as health+json', () => {
  it('answers the IETF shape with Accept: application/health+json', async (t) => {
    const { app, clock } = await createTestApp(t, { SERVER_NAME: 'webserver1' });
    await app.inject({ method: 'POST', url: '/addtosql' });
    clock.now += 90_500;
    const response = await app.inject({
      method: 'GET',
      url: '/healthcheck',
      headers: { accept: 'application/health+json' },
    });
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers['content-type'], 'application/health+json; charset=utf-8');
    assert.equal(response.headers['cache-control'], 'no-store');
    const body = response.json<{
      checks: Record<string, { observedValue?: number; time: string }[]>;
    }>();
    const primary = body.checks['database:responseTime']![0]!;
    assert.equal(typeof primary.observedValue, 'number');
    assert.deepEqual(body, {
      status: 'pass',
      version: '1.2.3-test',
      serviceId: 'webserver1',
      description: 'users-api: users directory',
      checks: {
        'database:responseTime': [
          {
            componentId: 'reads',
            componentType: 'datastore',
            observedValue: primary.observedValue,
            observedUnit: 'ms',
            status: 'pass',
            time: '2025-01-01T00:01:30.500Z',
          },
        ],
        'users:rows': [
          {
            componentType: 'datastore',
            observedValue: 1000,
            observedUnit: 'rows',
            status: 'pass',
            time: '2025-01-01T00:01:30.500Z',
          },
        ],
        uptime: [
          {
            componentType: 'system',
            observedValue: 90.5,
            observedUnit: 's',
            status: 'pass',
            time: '2025-01-01T00:01:30.500Z',
          },
        ],
      },
    });
  });

  it('answers the same with ?format=json, and warns on an empty table', async (t) => {
    const { app } = await createTestApp(t);
    const response = await app.inject({ method: 'GET', url: '/healthcheck?format=json' });
    assert.equal(response.statusCode, 200);
    const body = response.json<{ status: string; checks: Record<string, unknown[]> }>();
    assert.equal(body.status, 'warn');
    assert.deepEqual(body.checks['users:rows'], [
      {
        componentType: 'datastore',
        observedValue: 0,
        observedUnit: 'rows',
        status: 'warn',
        time: '2025-01-01T00:00:00.000Z',
        output: 'the users table is empty: POST /addtosql or users-api import loads it',
      },
    ]);
  });

  it('fails with 503 when the database cannot be read', async (t) => {
    const { app, db } = await createTestApp(t);
    await sql`drop table users`.execute(db.write);
    const response = await app.inject({
      method: 'GET',
      url: '/healthcheck',
      headers: { accept: 'text/plain;q=0.5, application/health+json' },
    });
    assert.equal(response.statusCode, 503);
    assert.equal(response.headers['content-type'], 'application/health+json; charset=utf-8');
    const body = response.json<{ status: string; checks: Record<string, unknown[]> }>();
    assert.equal(body.status, 'fail');
    assert.deepEqual(body.checks['database:responseTime'], [
      {
        componentId: 'reads',
        componentType: 'datastore',
        status: 'fail',
        time: '2025-01-01T00:00:00.000Z',
        output: 'database unavailable: cannot read the users table',
      },
    ]);
  });

  it('keeps the plain-text contract for every other request', async (t) => {
    const { app } = await createTestApp(t, { SERVER_NAME: 'webserver2' });
    for (const request of [
      { url: '/healthcheck', headers: { accept: '*/*' } },
      { url: '/healthcheck', headers: { accept: 'application/health+json;q=0' } },
      { url: '/healthcheck?format=text', headers: { accept: 'application/health+json' } },
    ]) {
      const response = await app.inject({ method: 'GET', ...request });
      assert.equal(response.statusCode, 200, JSON.stringify(request));
      assert.equal(response.headers['content-type'], 'text/plain; charset=utf-8');
      assert.equal(response.body, 'all good from webserver2');
    }
  });

  it('needs the METRICS_TOKEN bearer for the JSON when one is set; the plain text stays public', async (t) => {
    const { app } = await createTestApp(t, { METRICS_TOKEN: TOKEN, SERVER_NAME: 'webserver1' });
    const asks = [
      { url: '/healthcheck?format=json', headers: {} },
      { url: '/healthcheck', headers: { accept: 'application/health+json' } },
      { url: '/healthcheck', headers: { accept: 'application/json;q=0.5' } },
    ];
    for (const ask of asks) {
      for (const authorization of [undefined, 'Bearer wrong-token-0123456789', TOKEN]) {
        const headers =
          authorization === undefined ? ask.headers : { ...ask.headers, authorization };
        const refused = await app.inject({ method: 'GET', url: ask.url, headers });
        assert.equal(refused.statusCode, 401, `${JSON.stringify(headers)} ${ask.url}`);
        assert.equal(refused.headers['content-type'], 'application/problem+json; charset=utf-8');
        assert.equal(refused.headers['www-authenticate'], 'Bearer');
        assert.equal(refused.json<{ code: string }>().code, 'ERR_AUTH_METRICS_TOKEN_REQUIRED');
        assert.doesNotMatch(refused.body, /webserver1|reads|uptime/);
      }
      const allowed = await app.inject({
        method: 'GET',
        url: ask.url,
        headers: { ...ask.headers, authorization: `Bearer ${TOKEN}` },
      });
      assert.equal(allowed.statusCode, 200, ask.url);
      assert.equal(allowed.headers['content-type'], 'application/health+json; charset=utf-8');
      assert.equal(allowed.json<{ serviceId: string }>().serviceId, 'webserver1');
    }
    for (const url of ['/healthcheck', '/healthcheck?format=text', '/healthcheck?x=1']) {
      const text = await app.inject({ method: 'GET', url });
      assert.equal(text.statusCode, 200, url);
      assert.equal(text.headers['content-type'], 'text/plain; charset=utf-8');
      assert.equal(text.body, 'all good from webserver1');
    }
  });

  it('refuses an unknown format with 400 naming the choices', async (t) => {
    const { app } = await createTestApp(t);
    const response = await app.inject({ method: 'GET', url: '/healthcheck?format=xml' });
    assert.equal(response.statusCode, 400);
    assert.equal(
      response.json<{ detail: string }>().detail,
      'query parameter "format" must be equal to one of the allowed values: json, text',
    );
  });
});
