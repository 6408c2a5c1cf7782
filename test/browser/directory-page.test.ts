import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FastifyInstance } from 'fastify';
import type { Browser, Page } from 'playwright-core';
import { haproxyProcess } from '../../scripts/local-cluster.js';
import { launchBrowser, TEST_HOST_NAME, watchPageProblems } from '../helpers/browser.js';
import { freePort, requireBinary } from '../helpers/external-services.js';
import { createTestApp } from '../helpers/test-app.js';

const TOKEN = 'directory-page-test-token';

interface ApiUser {
  ID: number;
  NAME: string;
  STREET: string;
  CITY: string;
  STATE: string;
  USER_DATE: string;
}

interface Directory {
  app: FastifyInstance;
  browser: Browser;
  page: Page;
  /** http://users-api.test:<port> */
  origin: string;
  problems: string[];
}

/** The app on the sample data, listening on a free port, and a fresh page in chromium. */
async function openDirectory(t: TestContext): Promise<Directory | undefined> {
  const browser = await launchBrowser(t);
  if (browser === undefined) return undefined;
  const { app } = await createTestApp(t, { ADMIN_TOKEN: TOKEN });
  assert.equal((await app.inject({ method: 'POST', url: '/addtosql' })).statusCode, 200);
  const url = new URL(await app.listen({ host: '127.0.0.1', port: 0 }));
  const context = await browser.newContext({ acceptDownloads: true });
  const page = await context.newPage();
  const problems = watchPageProblems(page);
  return { app, browser, page, origin: `http://${TEST_HOST_NAME}:${url.port}`, problems };
}

/**
 * Page code is a string (this project has no DOM types), evaluated through the DevTools protocol:
 * `waitForFunction` would poll it with eval(), which the page's CSP rightly refuses.
 */
const IDLE = "document.getElementById('results')?.ariaBusy === 'false'";
const RENDERS = "Number(document.getElementById('results')?.dataset.renders ?? 0)";

/** Polls `expression` in the page until it is true (bounded: about 15 s). */
async function waitInPage(page: Page, expression: string): Promise<void> {
  for (let polls = 0; polls < 300; polls += 1) {
    if (await page.evaluate<boolean>(expression)) return;
    await sleep(50);
  }
  assert.fail(`the page never got to ${expression}`);
}

/** Runs `action` and waits for the table to be drawn again after it. */
async function afterRender(page: Page, action: () => Promise<unknown>): Promise<void> {
  const before = await page.evaluate<number>(RENDERS);
  await action();
  await waitInPage(page, `${RENDERS} > ${before} && ${IDLE}`);
}

/** Loads the page at `url` and waits for its table. */
async function open(page: Page, url: string): Promise<void> {
  await page.goto(url, { timeout: 15_000 });
  await waitInPage(page, `${RENDERS} > 0 && ${IDLE}`);
}

/** The table's rows as the users' names (the first cell). */
async function shownNames(page: Page): Promise<string[]> {
  return page.locator('#results-body tr td:first-child').allTextContents();
}

/** One column of the table's rows (1 is the name). */
async function shownColumn(page: Page, column: number): Promise<string[]> {
  return page.locator(`#results-body tr td:nth-child(${column})`).allTextContents();
}

async function apiUsers(app: FastifyInstance, query: string): Promise<ApiUser[]> {
  const response = await app.inject({
    method: 'GET',
    url: `/api?fields=ID,NAME,STREET,CITY,STATE,USER_DATE&${query}`,
  });
  assert.equal(response.statusCode, 200, query);
  return response.json<ApiUser[]>();
}

interface Violation {
  id: string;
  impact: string | null;
  targets: string[];
}

const namesOf = (users: ApiUser[]) => users.map((user) => user.NAME);

/** The count line once it has a number in it. */
async function shownCount(page: Page): Promise<string> {
  const count = page.locator('#count');
  await count.filter({ hasText: /^\d[\d,]* users? match/ }).waitFor({ timeout: 15_000 });
  return (await count.textContent()) ?? '';
}

describe('the directory page in a real browser (Debian chromium, headless)', () => {
  it('searches, filters, sorts, pages both ways, and the back button restores each view', async (t) => {
    const directory = await openDirectory(t);
    if (directory === undefined) return;
    const { app, page, origin, problems } = directory;

    await open(page, `${origin}/`);
    assert.deepEqual(await shownNames(page), namesOf(await apiUsers(app, 'limit=50')));
    assert.equal(await shownCount(page), '1,000 users match');
    assert.equal(await page.locator('#page-prev').isDisabled(), true);
    const visited: { url: string; names: string[] }[] = [
      { url: page.url(), names: await shownNames(page) },
    ];
    const remember = async () => visited.push({ url: page.url(), names: await shownNames(page) });

    // Search.
    await page.getByLabel('Search').fill('path');
    await afterRender(page, () =>
      page.getByRole('button', { name: 'Search', exact: true }).click(),
    );
    assert.match(page.url(), /[?&]q=path(&|$)/);
    const path = await apiUsers(app, 'q=path&limit=50');
    assert.ok(path.length > 0);
    assert.deepEqual(await shownNames(page), namesOf(path));
    const pathCount = (await app.inject({ url: '/api/count?q=path' })).json<{ count: number }>();
    assert.equal(await shownCount(page), `${pathCount.count} users match`);
    await remember();

    // Filter by state (typed in lower case), with the search cleared by the Clear button.
    await afterRender(page, () => page.getByRole('button', { name: 'Clear' }).click());
    assert.equal(new URL(page.url()).search, '');
    await remember();
    await page.locator('#filter-state').fill('ny');
    await page.locator('#filter-state').press('Enter');
    await page.waitForURL(/[?&]state=NY(&|$)/, { timeout: 15_000 });
    await waitInPage(page, IDLE);
    const ny = await apiUsers(app, 'state=NY&limit=50');
    assert.ok(ny.length > 1);
    assert.deepEqual(await shownNames(page), namesOf(ny));
    for (const state of await shownColumn(page, 4)) assert.equal(state, 'NY');
    await remember();

    // Sort by USER_DATE (as a date), then descending; the header says which.
    const dateHeader = page.locator('th', { has: page.locator('button[data-sort="USER_DATE"]') });
    await afterRender(page, () => page.locator('button[data-sort="USER_DATE"]').click());
    assert.match(page.url(), /[?&]sort=USER_DATE(&|$)/);
    assert.equal(await dateHeader.getAttribute('aria-sort'), 'ascending');
    await remember();
    assert.deepEqual(
      await shownNames(page),
      namesOf(await apiUsers(app, 'state=NY&sort=USER_DATE&limit=50')),
    );
    // The focus stays on the header's button: a keyboard user presses Enter again.
    await afterRender(page, () => page.keyboard.press('Enter'));
    assert.equal(await dateHeader.getAttribute('aria-sort'), 'descending');
    assert.deepEqual(
      await shownNames(page),
      namesOf(await apiUsers(app, 'state=NY&sort=-USER_DATE&limit=50')),
    );
    await remember();

    // Clear the filter: the sort stays, over every user.
    await afterRender(page, () => page.getByRole('button', { name: 'Clear' }).click());
    assert.equal(new URL(page.url()).search, '?sort=-USER_DATE');
    const descending = await apiUsers(app, 'sort=-USER_DATE&limit=200');
    const dateKey = (date: string) => date.slice(6) + date.slice(3, 5) + date.slice(0, 2);
    const keys = descending.map((user) => dateKey(user.USER_DATE));
    assert.deepEqual(keys, [...keys].sort().reverse(), 'USER_DATE sorts as a date');
    assert.deepEqual(await shownNames(page), namesOf(descending.slice(0, 50)));
    await remember();

    // Forward two pages, back one, then the browser's back button through every view.
    await afterRender(page, () => page.getByRole('button', { name: 'Next page' }).click());
    assert.deepEqual(await shownNames(page), namesOf(descending.slice(50, 100)));
    assert.equal(await page.locator('#page-prev').isDisabled(), false);
    await remember();
    await afterRender(page, () => page.getByRole('button', { name: 'Next page' }).click());
    assert.deepEqual(await shownNames(page), namesOf(descending.slice(100, 150)));
    await remember();
    await afterRender(page, () => page.getByRole('button', { name: 'Previous page' }).click());
    assert.deepEqual(await shownNames(page), namesOf(descending.slice(50, 100)));
    await remember();
    await afterRender(page, () => page.getByRole('button', { name: 'Previous page' }).click());
    assert.deepEqual(await shownNames(page), namesOf(descending.slice(0, 50)));
    assert.equal(await page.locator('#page-prev').isDisabled(), true, 'the first page has no prev');
    await remember();

    for (let index = visited.length - 2; index >= 0; index -= 1) {
      const expected = visited[index];
      assert.ok(expected !== undefined);
      await afterRender(page, () => page.goBack());
      assert.equal(page.url(), expected.url);
      assert.deepEqual(await shownNames(page), expected.names, `back to ${expected.url}`);
    }
    // A view's URL opened afresh shows the same view (shareable).
    const shared = visited.find((view) => view.url.endsWith('?state=NY&sort=-USER_DATE'));
    assert.ok(shared !== undefined);
    await open(page, shared.url);
    assert.deepEqual(await shownNames(page), shared.names);
    assert.equal(await page.locator('#filter-state').inputValue(), 'NY');
    assert.deepEqual(problems, []);
  });

  it('offers the current list as CSV and NDJSON downloads (?format=)', async (t) => {
    const directory = await openDirectory(t);
    if (directory === undefined) return;
    const { app, page, origin, problems } = directory;
    await open(page, `${origin}/?state=KS&sort=-NAME`);
    const expected = await apiUsers(app, 'state=KS&sort=-NAME');
    assert.ok(expected.length > 0);

    for (const format of ['csv', 'ndjson'] as const) {
      const link = page.locator(`#export-${format}`);
      const href = (await link.getAttribute('href')) ?? '';
      assert.deepEqual(
        Object.fromEntries(new URL(href, origin).searchParams),
        { state: 'KS', sort: '-NAME', format },
        href,
      );
      const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
      assert.equal(download.suggestedFilename(), `users.${format}`);
      const path = await download.path();
      const text = await readFile(path, 'utf8');
      if (format === 'csv') {
        const lines = text.trimEnd().split('\r\n');
        assert.equal(lines[0], 'NAME,STREET,CITY,STATE,USER_DATE');
        assert.deepEqual(
          lines.slice(1).map((line) => line.split(',')[0]),
          namesOf(expected),
        );
      } else {
        const users = text
          .trimEnd()
          .split('\n')
          .map((line) => JSON.parse(line) as Omit<ApiUser, 'ID'>);
        assert.deepEqual(
          users,
          expected.map(({ NAME, STREET, CITY, STATE, USER_DATE }) => ({
            NAME,
            STREET,
            CITY,
            STATE,
            USER_DATE,
          })),
        );
      }
    }
    assert.deepEqual(problems, []);
  });

  it('shows a user, edits it with If-Match, says so clearly on a 412, and deletes it', async (t) => {
    const directory = await openDirectory(t);
    if (directory === undefined) return;
    const { app, page, origin, problems } = directory;
    await open(page, `${origin}/?state=KS`);
    const [first] = await apiUsers(app, 'state=KS&limit=1');
    assert.ok(first !== undefined);

    // The detail view: from the name's link, in the URL, closed by Escape and the back button.
    await page.getByRole('link', { name: first.NAME, exact: true }).click();
    const dialog = page.getByRole('dialog');
    await dialog.getByRole('heading', { name: first.NAME }).waitFor({ timeout: 15_000 });
    assert.match(page.url(), new RegExp(`[?&]user=${first.ID}(&|$)`));
    const fields = await dialog.locator('dd').allTextContents();
    assert.deepEqual(fields, [
      String(first.ID),
      first.NAME,
      first.STREET,
      first.CITY,
      first.STATE,
      first.USER_DATE,
    ]);
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    assert.doesNotMatch(page.url(), /user=/);
    await page.goBack();
    await dialog.getByRole('heading', { name: first.NAME }).waitFor({ timeout: 15_000 });

    // Without the token: refused, and said so.
    await dialog.getByLabel('City', { exact: true }).fill('Edited City');
    await dialog.getByRole('button', { name: 'Save changes' }).click();
    await dialog
      .getByRole('alert')
      .filter({ hasText: /admin token was refused \(401\)/ })
      .waitFor();

    // With it: saved, and the table shows the change.
    await dialog.getByLabel('Admin token').fill(TOKEN);
    await afterRender(page, () => dialog.getByRole('button', { name: 'Save changes' }).click());
    await dialog.getByRole('status').filter({ hasText: 'Saved.' }).waitFor();
    const saved = (await app.inject({ url: `/api/users/${first.ID}` })).json<ApiUser>();
    assert.equal(saved.CITY, 'Edited City');
    assert.equal(saved.NAME, first.NAME);
    assert.equal(await page.evaluate("sessionStorage.getItem('users-api.admin-token')"), TOKEN);
    assert.equal(await page.evaluate('localStorage.length'), 0, 'nothing in localStorage');

    // Someone else changes the user meanwhile: this page's ETag is stale, 412, nothing changes.
    const other = await app.inject({
      method: 'PATCH',
      url: `/api/users/${first.ID}`,
      headers: {
        authorization: `Bearer ${TOKEN}`,
        'if-match': '*',
        'content-type': 'application/merge-patch+json',
      },
      payload: { STREET: 'Changed Elsewhere' },
    });
    assert.equal(other.statusCode, 200);
    await dialog.getByLabel('Name', { exact: true }).fill('Stale Write');
    await dialog.getByRole('button', { name: 'Save changes' }).click();
    const alert = dialog.getByRole('alert');
    await alert.filter({ hasText: /412 Precondition Failed/ }).waitFor();
    assert.match(
      (await alert.textContent()) ?? '',
      /someone changed this user after you opened it/,
    );
    const unchanged = (await app.inject({ url: `/api/users/${first.ID}` })).json<ApiUser>();
    assert.deepEqual(unchanged, { ...saved, STREET: 'Changed Elsewhere' });
    await dialog.getByRole('button', { name: 'Reload this user' }).click();
    await dialog.locator('dd', { hasText: 'Changed Elsewhere' }).waitFor();
    assert.equal(await dialog.getByLabel('Name', { exact: true }).inputValue(), first.NAME);

    // Delete, confirmed: gone from the API and from the table.
    await dialog.getByRole('button', { name: 'Delete user' }).click();
    await afterRender(page, () => dialog.getByRole('button', { name: 'Confirm delete' }).click());
    await dialog.waitFor({ state: 'hidden' });
    assert.equal((await app.inject({ url: `/api/users/${first.ID}` })).statusCode, 404);
    assert.equal(await page.getByRole('status').first().textContent(), `Deleted ${first.NAME}.`);
    assert.equal((await shownNames(page)).includes(first.NAME), false);

    // Only the answers provoked on purpose (401, 412) were errors; chromium logs each one.
    const provoked = /\/api\/users\/\d+ (401|412)$|status of (401|412)/;
    assert.deepEqual(
      problems.filter((problem) => !provoked.test(problem)),
      [],
    );
  });

  it('has no serious or critical accessibility violations (axe-core), the list and the detail', async (t) => {
    const directory = await openDirectory(t);
    if (directory === undefined) return;
    const { page, origin, problems } = directory;
    const axeSource = await readFile(
      createRequire(import.meta.url).resolve('axe-core/axe.min.js'),
      'utf8',
    );
    const check = async (what: string) => {
      // Evaluated through the DevTools protocol: the page's CSP (no inline script) stays on.
      await page.evaluate(axeSource);
      const results = await page.evaluate<Violation[]>(
        `axe.run(document).then((results) => results.violations.map((violation) => ({
          id: violation.id,
          impact: violation.impact,
          targets: violation.nodes.map((node) => node.target.join(' ')),
        })))`,
      );
      const serious = results.filter((violation) =>
        ['serious', 'critical'].includes(violation.impact ?? ''),
      );
      assert.deepEqual(serious, [], `${what}: ${JSON.stringify(results)}`);
    };
    await open(page, `${origin}/?sort=NAME`);
    await shownCount(page);
    await check('the list');
    await page.locator('#results-body a').first().click();
    await page.getByRole('dialog').locator('dd').first().waitFor();
    await check('the detail');

    // Keyboard: the skip link comes first.
    await open(page, `${origin}/?sort=NAME`);
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate('document.activeElement?.textContent'), 'Skip to the results');
    assert.deepEqual(problems, []);
  });

  it('works through the real HAProxy config by a host name, in front of two instances', async (t) => {
    if ((await requireBinary(t, ['haproxy'], 'haproxy')) === undefined) return;
    const browser = await launchBrowser(t);
    if (browser === undefined) return;
    const hosts: string[] = [];
    for (const name of ['webserver1', 'webserver2']) {
      const { app } = await createTestApp(t, { SERVER_NAME: name });
      await app.inject({ method: 'POST', url: '/addtosql' });
      hosts.push(new URL(await app.listen({ host: '127.0.0.1', port: 0 })).host);
    }
    const dir = await mkdtemp(join(tmpdir(), 'users-api-directory-edge-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const lbPort = await freePort();
    const haproxy = haproxyProcess({
      logFile: join(dir, 'haproxy.log'),
      lbPort,
      statsPort: await freePort(),
      statsPassword: randomBytes(12).toString('hex'),
      appAddrs: [hosts[0] ?? '', hosts[1] ?? ''],
    });
    t.after(() => haproxy.stop('SIGKILL'));
    await haproxy.start();

    const page = await browser.newPage();
    const problems = watchPageProblems(page);
    const origin = `http://${TEST_HOST_NAME}:${lbPort}`;
    const response = await page.goto(`${origin}/?name=du`, { timeout: 15_000 });
    assert.match(response?.headers()['content-security-policy'] ?? '', /script-src 'self'/);
    await waitInPage(page, IDLE);
    const names = await shownNames(page);
    assert.ok(names.length > 1);
    for (const name of names) assert.match(name, /^du/i);
    await shownCount(page);
    assert.deepEqual(problems, [], 'every asset and API call through HAProxy, no CSP report');
  });
});
