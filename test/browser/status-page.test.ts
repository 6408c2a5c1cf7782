import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { Page } from 'playwright-core';
import { haproxyProcess } from '../../scripts/local-cluster.js';
import { buildApp } from '../../src/app.js';
import type { StatusSnapshot } from '../../src/monitor/status-snapshot-schema.js';
import type { StatusSnapshot as PageStatusSnapshot } from '../../web/status/status-snapshot.js';
import { launchBrowser, TEST_HOST_NAME, watchPageProblems } from '../helpers/browser.js';
import { freePort, requireBinary } from '../helpers/external-services.js';
import { mariadbPairSuite, startMysqlApp } from '../helpers/mariadb.js';
import { createTestDatabase, type TestDatabase } from '../helpers/test-database.js';
import { testAppDependencies } from '../helpers/test-app.js';

const TOKEN = 'status-page-token-0123456789abcdef';
/** Generous: the machine is shared, and every wait is for something the page must do anyway. */
const WAIT_MS = 30_000;

/** True only when both types accept the same values: the page's copy has not drifted. */
type SameType<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const snapshotTypesAgree: SameType<StatusSnapshot, PageStatusSnapshot> = true;

/** The real app on `database`, on the real clock, listening on loopback (`port`, or a free one). */
async function listen(
  t: TestContext,
  database: TestDatabase,
  port = 0,
): Promise<{ app: FastifyInstance; port: number }> {
  const app = buildApp(testAppDependencies(database.config, database.db, Date.now));
  t.after(() => app.close());
  const url = new URL(await app.listen({ host: '127.0.0.1', port }));
  return { app, port: Number(url.port) };
}

/** axe-core's WCAG 2.x A/AA and best-practice rules on the page: the serious and critical ones. */
async function seriousAxeViolations(page: Page): Promise<string[]> {
  const source = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), {
    encoding: 'utf8',
  });
  // Evaluated through the DevTools protocol, not as a page script: the page's CSP stays as is.
  await page.evaluate(source);
  // Page-side code is written as strings: this project's tsconfig has no DOM types.
  const violations = await page.evaluate<AxeViolation[]>(`axe
    .run({ runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] })
    .then((results) => results.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      nodes: v.nodes.map((node) => node.html).slice(0, 3),
    })))`);
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.impact} ${v.id}: ${v.nodes.join(' | ')}`);
}

interface AxeViolation {
  id: string;
  impact: string | null;
  nodes: string[];
}

/** The `datetime` of the page's last update, once it differs from `previous`. */
async function nextUpdate(page: Page, previous: string | null): Promise<string> {
  // A selector, not a page function: the page's CSP forbids the eval that string predicates use.
  const selector =
    previous === null ? '#updated[datetime]' : `#updated[datetime]:not([datetime="${previous}"])`;
  const updated = page.locator(selector);
  await updated.waitFor({ state: 'attached', timeout: WAIT_MS });
  return (await updated.getAttribute('datetime')) ?? '';
}

async function textOf(page: Page, selector: string): Promise<string> {
  return ((await page.locator(selector).textContent({ timeout: WAIT_MS })) ?? '').trim();
}

describe('the status page in a real browser (Debian chromium, headless), SQLite', () => {
  it('has the same snapshot type as the server (compile-time check)', () => {
    assert.equal(snapshotTypesAgree, true);
  });

  it('asks for a login, then shows the instance, updates live, survives a restart, and passes axe', async (t) => {
    const browser = await launchBrowser(t);
    if (browser === undefined) return;
    const database = await createTestDatabase(t, {
      METRICS_TOKEN: TOKEN,
      STATUS_INTERVAL_MS: '250',
      SERVER_NAME: 'webserver1',
    });
    const first = await listen(t, database);
    const origin = `http://${TEST_HOST_NAME}:${first.port}`;
    const loaded = await fetch(`http://127.0.0.1:${first.port}/addtosql`, { method: 'POST' });
    assert.equal(loaded.status, 200, await loaded.text());

    // No login: the page and its assets answer 401 with a Basic challenge, and show nothing.
    // (Headless chromium, with nobody to type a password, abandons the page on the challenge.)
    const refused = await fetch(`http://127.0.0.1:${first.port}/status`);
    assert.equal(refused.status, 401);
    assert.match(refused.headers.get('www-authenticate') ?? '', /^Basic realm=/);
    await refused.body?.cancel();
    for (const path of ['/status/assets/status/status.js', '/status/events', '/status.json']) {
      const response = await fetch(`http://127.0.0.1:${first.port}${path}`);
      assert.equal(response.status, 401, path);
      await response.body?.cancel();
    }

    // Logged in as a browser does it: HTTP Basic, any user name, the token as password.
    const context = await browser.newContext({
      httpCredentials: { username: 'ops', password: TOKEN },
    });
    t.after(() => context.close());
    const page = await context.newPage();
    const problems = watchPageProblems(page);
    const response = await page.goto(`${origin}/status`, { timeout: WAIT_MS });
    assert.equal(response?.status(), 200);
    assert.match(
      (await response?.headerValue('content-security-policy')) ?? '',
      /script-src 'self'/,
    );
    await page.locator('#connection[data-state="live"]').waitFor({ timeout: WAIT_MS });

    assert.equal(await textOf(page, '#instance-server'), 'webserver1');
    assert.equal(await textOf(page, '#data-rows'), '1,000');
    assert.match(await textOf(page, '#last-import'), /^imported \(1,000 rows\)/);
    assert.equal(await textOf(page, '#last-backup'), 'none recorded in BACKUP_DIR');
    assert.equal(await page.locator('#problems-none').isVisible(), true);
    assert.equal(await page.locator('#problems li').count(), 0);
    const sqlite = page.locator('#databases tbody tr[data-name="sqlite"]');
    assert.deepEqual(await sqlite.locator('th, td').allTextContents(), [
      'sqlite',
      'sqlite',
      'reachable',
      'yes',
      'not applicable',
      '',
    ]);
    assert.equal(await page.locator('#haproxy-section').isVisible(), false, 'no HAPROXY_STATS_URL');
    assert.equal(await page.getByRole('heading', { level: 1 }).count(), 1);

    // Live: new snapshots arrive without a reload, and the chart keeps them.
    const marker = await page.evaluate<string>("window.name = 'loaded once'");
    let updated = await nextUpdate(page, null);
    updated = await nextUpdate(page, updated);
    for (let i = 0; i < 20; i++) {
      const answer = await fetch(`http://127.0.0.1:${first.port}/healthcheck`);
      await answer.text();
    }
    // A rate needs two snapshots, so the first has none: a fourth snapshot makes three readings
    // (two updates alone gave 2 when the requests above fell before the third).
    updated = await nextUpdate(page, updated);
    // The newest reading (the table is in a closed <details>: attached, not visible).
    await page
      .locator('#readings tbody tr:first-child td')
      .first()
      .filter({ hasNotText: /^0$/ })
      .waitFor({ state: 'attached', timeout: WAIT_MS });
    const readings = Number(
      await page.locator('#chart-requestsPerSecond').getAttribute('data-readings'),
    );
    assert.ok(readings >= 3, `${readings} readings in the chart`);
    assert.equal(await page.locator('#chart-requestsPerSecond svg polyline').count(), 1);
    assert.match(
      await textOf(page, '#chart-requestsPerSecond-summary'),
      /^Requests per second: now [\d.]+\/s; over the last \d+ s, lowest [\d.]+\/s, highest [\d.]+\/s\.$/,
    );
    assert.match(await textOf(page, '#chart-lagSeconds-summary'), /no replica reports a lag/);

    await page.locator('details.readings summary').click();
    assert.deepEqual(await seriousAxeViolations(page), []);
    assert.deepEqual(problems, [], 'no failed request, console error or CSP violation');

    // The server goes away: the page says so (politely, to screen readers too) and keeps its
    // last reading; a server on the same address is picked up without a reload.
    await first.app.close();
    await page.locator('#connection[data-state="disconnected"]').waitFor({ timeout: WAIT_MS });
    assert.match(await textOf(page, '#connection'), /^Disconnected: /);
    assert.match(await textOf(page, '#announcer'), /^Disconnected: /);
    assert.equal(await page.locator('#announcer').getAttribute('aria-live'), 'polite');
    assert.equal(await textOf(page, '#data-rows'), '1,000', 'the last reading stays');

    await listen(t, database, first.port);
    await page.locator('#connection[data-state="live"]').waitFor({ timeout: WAIT_MS });
    await nextUpdate(page, updated);
    assert.equal(await textOf(page, '#announcer'), 'Live updates are back.');
    assert.equal(await page.evaluate('window.name'), marker, 'the page was not reloaded');
  });
});

const pairSuite = mariadbPairSuite();

describe('the status page on the MariaDB pair (real replication)', { timeout: 300_000 }, () => {
  pairSuite.register();

  it('shows the replica going unreachable when it stops and back when it restarts, without a reload', async (t) => {
    const pair = pairSuite.require();
    const browser = await launchBrowser(t);
    if (browser === undefined) return;
    const { url } = await startMysqlApp(t, pair, { STATUS_INTERVAL_MS: '250' });
    const loaded = await fetch(`${url}/addtosql`, { method: 'POST' });
    assert.equal(loaded.status, 200);
    await loaded.text();
    const page = await browser.newPage();
    const problems = watchPageProblems(page);
    await page.goto(`http://${TEST_HOST_NAME}:${new URL(url).port}/status`, { timeout: WAIT_MS });
    const replica = page.locator('#databases tbody tr[data-name="replica 1"]');
    await page.locator('#problems-none:not([hidden])').waitFor({ timeout: WAIT_MS });
    await replica.and(page.locator('[data-reachable="true"]')).waitFor({ timeout: WAIT_MS });
    assert.deepEqual(await page.locator('#databases tbody th').allTextContents(), [
      'primary',
      'replica 1',
    ]);
    assert.equal(await replica.locator('td').nth(1).textContent(), 'reachable');
    assert.match((await replica.locator('td').nth(3).textContent()) ?? '', /^\d+(\.\d+)? s$/);
    const marker = await page.evaluate<string>("window.name = 'loaded once'");

    await pair.replica.kill();
    await replica.and(page.locator('[data-reachable="false"]')).waitFor({ timeout: WAIT_MS });
    // Role (its writability is unknown while unreachable), reachable, serves reads, lag.
    const cells = await replica.locator('td').allTextContents();
    assert.match(cells[0] ?? '', /^replica/);
    assert.deepEqual(cells.slice(1, 4), ['unreachable', 'no', 'unknown']);
    assert.match((await replica.locator('td').nth(4).textContent()) ?? '', /^unreachable: /);
    assert.match(
      await textOf(page, '#problems li'),
      /^replica 1: out of the read rotation: unreachable/,
    );
    await page
      .locator('#announcer', { hasText: /Problem: replica 1: out of the read rotation/ })
      .waitFor({ timeout: WAIT_MS });
    assert.equal(await page.title(), `(1) users-api status: mysql-test`);

    await pair.replica.start();
    // Back in rotation takes a probe or two after it is reachable again: allow for a slow start.
    await page.locator('#problems-none:not([hidden])').waitFor({ timeout: 60_000 });
    assert.equal(await replica.getAttribute('data-reachable'), 'true');
    assert.match(await textOf(page, '#announcer'), /Nothing is wrong now\.$/);
    assert.equal(await page.evaluate('window.name'), marker, 'the page was not reloaded');
    assert.equal(await textOf(page, '#connection'), 'Live: updates as they happen');
    assert.deepEqual(problems, []);
  });

  it('serves both pages through the real HAProxy config by a host name, two instances on the pair', async (t) => {
    const pair = pairSuite.require();
    if ((await requireBinary(t, ['haproxy'], 'haproxy')) === undefined) return;
    const browser = await launchBrowser(t);
    if (browser === undefined) return;
    const dir = await mkdtemp(join(tmpdir(), 'users-api-pair-edge-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const [lbPort, statsPort] = [await freePort(), await freePort()];
    const statsPassword = randomBytes(12).toString('hex');
    const passwordFile = join(dir, 'stats_password');
    await writeFile(passwordFile, `${statsPassword}\n`, { mode: 0o600 });
    const hosts: string[] = [];
    for (const name of ['webserver1', 'webserver2']) {
      const { url } = await startMysqlApp(t, pair, {
        SERVER_NAME: name,
        STATUS_INTERVAL_MS: '250',
        HAPROXY_STATS_URL: `http://127.0.0.1:${statsPort}/`,
        HAPROXY_STATS_PASSWORD_FILE: passwordFile,
      });
      hosts.push(new URL(url).host);
    }
    const loaded = await fetch(`http://${hosts[0]}/addtosql`, { method: 'POST' });
    assert.equal(loaded.status, 200, await loaded.text());
    const haproxy = haproxyProcess({
      logFile: join(dir, 'haproxy.log'),
      lbPort,
      statsPort,
      statsPassword,
      appAddrs: [hosts[0] ?? '', hosts[1] ?? ''],
    });
    t.after(() => haproxy.stop('SIGKILL'));
    await haproxy.start();
    const origin = `http://${TEST_HOST_NAME}:${lbPort}`;
    const page = await browser.newPage();
    const problems = watchPageProblems(page);

    // The directory: rows read from the replica, through HAProxy, under the page's CSP.
    await page.goto(`${origin}/?name=du`, { timeout: WAIT_MS });
    await page.locator('#results[aria-busy="false"]').waitFor({ timeout: WAIT_MS });
    const names = page.locator('#results-body tr td:first-child');
    await names.first().waitFor({ timeout: WAIT_MS });
    const shown = await names.allTextContents();
    assert.ok(shown.length > 1, `rows shown: ${shown.length}`);
    for (const name of shown) assert.match(name, /^du/i);
    await page.locator('#count', { hasText: /match/ }).waitFor({ timeout: WAIT_MS });

    // The status page (loopback is within MONITORING_ALLOW's default): both servers, and the
    // web server HAProxy sends traffic to, from HAProxy's own stats.
    await page.goto(`${origin}/status`, { timeout: WAIT_MS });
    await page.locator('#problems-none:not([hidden])').waitFor({ timeout: WAIT_MS });
    assert.deepEqual(await page.locator('#databases tbody th').allTextContents(), [
      'primary',
      'replica 1',
    ]);
    await page
      .locator('#haproxy-active', { hasText: 'HAProxy sends traffic to webserver1.' })
      .waitFor({ timeout: WAIT_MS });
    assert.deepEqual(problems, [], 'every asset, API call and event stream through HAProxy');
  });
});
