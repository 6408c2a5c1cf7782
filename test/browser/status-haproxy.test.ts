import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { haproxyProcess } from '../../scripts/local-cluster.js';
import { buildApp } from '../../src/app.js';
import { launchBrowser, TEST_HOST_NAME, watchPageProblems } from '../helpers/browser.js';
import { freePort, requireBinary } from '../helpers/external-services.js';
import { testAppDependencies } from '../helpers/test-app.js';
import { createTestDatabase } from '../helpers/test-database.js';

const TOKEN = 'status-haproxy-page-token-0123456789';
const WAIT_MS = 30_000;
/** Loopback, but only 127.0.0.1: the browser and the apps come from it, the refused client not. */
const MONITORING_ALLOW = '127.0.0.1/32';
/** Another loopback address, outside MONITORING_ALLOW: a client from another network. */
const OUTSIDE_ADDRESS = '127.0.0.2';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * A GET from `localAddress`, by the host name a browser would send, with the login: the answer
 * as far as it comes within 3 s (an event stream is cut there, its head and first bytes read).
 */
function getFrom(localAddress: string, url: string): Promise<Answer> {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: target.hostname,
        port: target.port,
        path: `${target.pathname}${target.search}`,
        localAddress,
        headers: {
          host: `${TEST_HOST_NAME}:${target.port}`,
          authorization: `Basic ${Buffer.from(`ops:${TOKEN}`).toString('base64')}`,
          accept: 'text/event-stream, text/html, */*',
        },
        timeout: 3000,
      },
      (response) => {
        let body = '';
        const done = () =>
          resolve({ status: response.statusCode ?? 0, headers: response.headers, body });
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.on('end', done);
        setTimeout(() => {
          done();
          req.destroy();
        }, 3000).unref();
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer within 3 s`)));
    req.on('error', reject);
    req.end();
  });
}

/** Two instances on the sample data, reading HAProxy's stats, behind the real haproxy.cfg. */
async function startEdge(t: TestContext) {
  const dir = await mkdtemp(join(tmpdir(), 'users-api-status-edge-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const [lbPort, statsPort] = [await freePort(), await freePort()];
  const statsPassword = randomBytes(12).toString('hex');
  const passwordFile = join(dir, 'stats_password');
  await writeFile(passwordFile, `${statsPassword}\n`, { mode: 0o600 });
  const hosts: string[] = [];
  for (const name of ['webserver1', 'webserver2']) {
    const database = await createTestDatabase(t, {
      SERVER_NAME: name,
      METRICS_TOKEN: TOKEN,
      STATUS_INTERVAL_MS: '250',
      HAPROXY_STATS_URL: `http://127.0.0.1:${statsPort}/`,
      HAPROXY_STATS_PASSWORD_FILE: passwordFile,
    });
    const app = buildApp(testAppDependencies(database.config, database.db, Date.now));
    t.after(() => app.close());
    const loaded = await app.inject({ method: 'POST', url: '/addtosql' });
    assert.equal(loaded.statusCode, 200, loaded.body);
    hosts.push(new URL(await app.listen({ host: '127.0.0.1', port: 0 })).host);
  }
  const logFile = join(dir, 'haproxy.log');
  const haproxy = haproxyProcess({
    logFile,
    lbPort,
    statsPort,
    statsPassword,
    appAddrs: [hosts[0] ?? '', hosts[1] ?? ''],
    env: { MONITORING_ALLOW },
  });
  t.after(() => haproxy.stop('SIGKILL'));
  await haproxy.start();
  return { lbPort, statsPort, hosts, log: () => readFile(logFile, 'utf8') };
}

describe('the status page through the real HAProxy config (two instances, SQLite)', () => {
  it('from a monitoring address: renders, updates live through HAProxy, names the active web server; others get 403 and no internal name', async (t) => {
    if ((await requireBinary(t, ['haproxy'], 'haproxy')) === undefined) return;
    const browser = await launchBrowser(t);
    if (browser === undefined) return;
    const edge = await startEdge(t);
    const origin = `http://${TEST_HOST_NAME}:${edge.lbPort}`;

    // Logged in as a browser does it (HTTP Basic, the token as password), from 127.0.0.1.
    const context = await browser.newContext({
      httpCredentials: { username: 'ops', password: TOKEN },
    });
    t.after(() => context.close());
    const page = await context.newPage();
    const problems = watchPageProblems(page);
    const streams: string[] = [];
    page.on('request', (request) => {
      if (new URL(request.url()).pathname === '/status/events') streams.push(request.url());
    });
    const response = await page.goto(`${origin}/status`, { timeout: WAIT_MS });
    assert.equal(response?.status(), 200);
    assert.equal(await response?.headerValue('x-served-by'), 'webserver1');
    assert.match((await response?.headerValue('content-security-policy')) ?? '', /script-src/);
    await page.locator('#connection[data-state="live"]').waitFor({ timeout: WAIT_MS });
    assert.equal(
      ((await page.locator('#instance-server').textContent()) ?? '').trim(),
      'webserver1',
    );
    assert.equal(((await page.locator('#data-rows').textContent()) ?? '').trim(), '1,000');

    // HAProxy's view, read by the instance from the stats listener: webserver1 takes traffic.
    await page
      .locator('#haproxy-servers tbody tr[data-name="webserver2"] td.ok')
      .waitFor({ timeout: WAIT_MS });
    assert.equal(await page.locator('#haproxy-section').isVisible(), true);
    assert.equal(
      await page.locator('#haproxy-active').textContent(),
      'HAProxy sends traffic to webserver1.',
    );
    const rows = [];
    for (const row of await page.locator('#haproxy-servers tbody tr').all()) {
      rows.push(await row.locator('th, td').allTextContents());
    }
    assert.deepEqual(rows, [
      ['webserver1', 'UP', 'active'],
      ['webserver2', 'UP', 'backup'],
    ]);

    // Live: new snapshots keep arriving over one event stream through HAProxy (its 30 s
    // timeouts are for idle connections; the app writes every 250 ms here, a comment every
    // 15 s at least), without a reload and without the stream being opened again.
    const marker = await page.evaluate<string>("window.name = 'loaded once'");
    const seen = new Set<string>();
    const started = Date.now();
    while (seen.size < 8 && Date.now() - started < WAIT_MS) {
      const at = await page.locator('#updated').getAttribute('datetime');
      if (at !== null) seen.add(at);
      await sleep(200);
    }
    assert.ok(seen.size >= 8, `${seen.size} updates seen in ${Date.now() - started} ms`);
    const readings = Number(
      await page.locator('#chart-requestsPerSecond').getAttribute('data-readings'),
    );
    assert.ok(readings >= 8, `${readings} readings in the chart`);
    assert.equal(await page.evaluate('window.name'), marker, 'the page was not reloaded');
    assert.equal(streams.length, 1, `event streams opened: ${streams.join(', ')}`);
    assert.equal(await page.locator('#connection').getAttribute('data-state'), 'live');
    assert.deepEqual(problems, [], 'every asset and the event stream through HAProxy');

    // From outside MONITORING_ALLOW (127.0.0.2), with the right login all the same: HAProxy
    // refuses the page, its assets, its feed and its JSON, and says nothing of what is behind.
    const internal = [...edge.hosts, `:${edge.statsPort}`, 'webserver', 'sqlite', 'haproxy'];
    const paths = [
      '/status',
      '/status.json',
      '/status/events',
      '/status/assets/status/status.js',
      '/status/assets/status/status.css',
    ];
    for (const path of paths) {
      const allowed = await getFrom('127.0.0.1', `http://127.0.0.1:${edge.lbPort}${path}`);
      assert.equal(allowed.status, 200, `${path} from 127.0.0.1`);
      const refused = await getFrom(OUTSIDE_ADDRESS, `http://127.0.0.1:${edge.lbPort}${path}`);
      assert.equal(refused.status, 403, `${path} from ${OUTSIDE_ADDRESS}`);
      const seenByClient = `${JSON.stringify(refused.headers)}\n${refused.body}`;
      for (const name of internal) {
        assert.ok(!seenByClient.includes(name), `${path}: ${name} in ${seenByClient}`);
      }
    }
    // Refused by the client's address, not by something else about the request.
    assert.match(await edge.log(), /^127\.0\.0\.2:\d+ .* 403 /m);
  });
});
