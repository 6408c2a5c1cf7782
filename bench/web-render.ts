/**
 * How fast the directory page renders on a large table, measured in the browser with the
 * Performance API: the first render (navigation start to the table filled, the page's own
 * `directory:rendered` mark) and each page change (a click or a submitted filter to the next
 * mark), median and p95 over N rounds; the count's own load apart. Prints one JSON object and
 * saves it to bench/results/web-render.json. Never asserts.
 *
 *   npm run bench:web                                  # 1,000,000 users, 20 rounds
 *   npm run bench:web -- --rows 100000 --rounds 5      # quick
 *   npm run bench:web -- --db /tmp/users-1m.db         # keep (or reuse) the imported table
 */
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import type { Page } from 'playwright-core';
import { loadConfig } from '../src/config/config.js';
import { migrateToLatest } from '../src/db/migrate-to-latest.js';
import { openDatabase } from '../src/db/open-database.js';
import { countUsers } from '../src/db/users-repository.js';
import { fileImportSource } from '../src/importer/import-source.js';
import { importUsers } from '../src/importer/import-users.js';
import { generateUsers } from '../scripts/generate-users-lib.js';
import { BROWSER_HOST_NAME, launchChromium } from '../scripts/launch-chromium.js';
import { freePort } from '../scripts/mariadb-pair.js';
import { SERVE_NODE_FLAGS } from '../scripts/serve-node-flags.js';

const { values: options } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    rounds: { type: 'string', default: '20' },
    db: { type: 'string' },
  },
});
const ROWS = Number(options.rows);
const ROUNDS = Number(options.rounds);
const REPO_ROOT = new URL('..', import.meta.url).pathname;

/** The page changes measured each round, in this order (each starts from the view before). */
const STEPS = [
  ['next page', 'next'],
  ['next page again', 'next'],
  ['previous page', 'prev'],
  ['first page', 'first'],
  ['sort by name', 'sort:NAME'],
  ['sort by name, descending', 'sort:NAME'],
  ['sort by user date', 'sort:USER_DATE'],
  ['next page (sorted by user date)', 'next'],
  ['filter state=NY', 'filter:state=NY'],
  ['next page (state=NY)', 'next'],
  ['filter name starts with "ma"', 'filter:name=ma'],
  ['filter city (exact)', 'filter:city=Zurmubku'],
  // q is a substring over four columns (no index can serve it): a common surname part fills a
  // page after a short scan; a rare word scans the whole table, here in the order of the sort
  // still in force (user date), through its index (docs/web-ui.md#speed).
  ['search q="mmerma" (a surname part, common)', 'filter:q=mmerma'],
  ['next page (q="mmerma")', 'next'],
  ['search q="Zurmub" (rare)', 'filter:q=Zurmub'],
  ['clear the filters', 'filter:'],
] as const;

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return Math.round((sorted[index] ?? Number.NaN) * 10) / 10;
}

async function prepareDatabase(path: string, dir: string): Promise<number> {
  const config = loadConfig({ LOG_LEVEL: 'silent', DATABASE_URL: `sqlite:${path}` }, dir);
  const db = openDatabase(config.database, { create: true });
  try {
    await migrateToLatest(db);
    const present = await db.read(countUsers);
    if (present === ROWS) return present;
    const csv = join(dir, 'users.csv');
    const out = createWriteStream(csv);
    for (const chunk of generateUsers(ROWS)) if (!out.write(chunk)) await once(out, 'drain');
    out.end();
    await once(out, 'finish');
    const { rows } = await importUsers(db, fileImportSource(csv, 'csv'), 'replace');
    await rm(csv);
    return rows;
  } finally {
    await db.close();
  }
}

async function serve(databasePath: string) {
  const port = await freePort();
  const child = spawn(process.execPath, [...SERVE_NODE_FLAGS, 'dist/main.js', 'serve'], {
    cwd: REPO_ROOT,
    env: {
      PATH: process.env.PATH,
      DATABASE_URL: `sqlite:${databasePath}`,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const url = `http://127.0.0.1:${port}`;
  for (let attempt = 0; attempt < 600; attempt += 1) {
    if (child.exitCode !== null) throw new Error(`the service exited with ${child.exitCode}`);
    try {
      if ((await fetch(`${url}/livez`)).ok) return { port, child };
    } catch {
      // Not listening yet: try again shortly (bounded: 600 × 100 ms).
    }
    await sleep(100);
  }
  child.kill('SIGKILL');
  throw new Error('the service did not start within 60 s');
}

/**
 * In the page (a string: this project's TypeScript has no DOM types): navigation start to the
 * first `directory:rendered` mark, and to the count shown.
 */
const FIRST_RENDER = `(async () => {
  const until = async (done) => {
    for (let polls = 0; polls < 6000 && !done(); polls += 1) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  };
  await until(() => performance.getEntriesByName('directory:rendered').length > 0);
  await until(() => /match/.test(document.getElementById('count')?.textContent ?? ''));
  const rendered = performance.getEntriesByName('directory:rendered')[0]?.startTime ?? NaN;
  const api = performance
    .getEntriesByType('resource')
    .find((entry) => entry.name.includes('/api?'));
  return {
    renderMs: rendered,
    countMs: performance.now(),
    apiStartMs: api?.startTime ?? NaN,
    apiMs: api === undefined ? NaN : api.responseEnd - api.startTime,
  };
})()`;

/** In the page: one page change, started there (no driver round trip in the figure). */
const PAGE_CHANGE = (action: string) => `(async (action) => {
  const table = document.getElementById('results');
  const before = Number(table.dataset.renders);
  const started = performance.now();
  const [kind, argument = ''] = action.split(':');
  if (kind === 'next' || kind === 'prev' || kind === 'first') {
    document.getElementById('page-' + kind).click();
  } else if (kind === 'sort') {
    document.querySelector('button[data-sort="' + argument + '"]').click();
  } else {
    for (const name of ['q', 'name', 'city', 'state']) {
      document.getElementById('filter-' + name).value = '';
    }
    const [name, value = ''] = argument.split('=');
    if (name) document.getElementById('filter-' + name).value = value;
    document.getElementById('filters').requestSubmit();
  }
  for (let polls = 0; polls < 60000 && Number(table.dataset.renders) === before; polls += 1) {
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  const rendered = performance.getEntriesByName('directory:rendered').at(-1)?.startTime ?? NaN;
  return { ms: rendered - started, rows: table.tBodies[0]?.rows.length ?? 0 };
})(${JSON.stringify(action)})`;

async function firstRender(page: Page, url: string) {
  await page.goto(url, { timeout: 60_000 });
  return page.evaluate<{ renderMs: number; countMs: number; apiStartMs: number; apiMs: number }>(
    FIRST_RENDER,
  );
}

function pageChange(page: Page, action: string) {
  return page.evaluate<{ ms: number; rows: number }>(PAGE_CHANGE(action));
}

const build = spawnSync('npm', ['run', 'build', '--silent'], { cwd: REPO_ROOT, stdio: 'inherit' });
if (build.status !== 0) throw new Error('npm run build failed');

const dir = await mkdtemp(join(tmpdir(), 'users-api-web-bench-'));
const databasePath = options.db ?? join(dir, 'users.db');
const reused = options.db !== undefined && existsSync(options.db);
const importStarted = performance.now();
const rows = await prepareDatabase(databasePath, dir);
const importSeconds = Math.round((performance.now() - importStarted) / 100) / 10;
const server = await serve(databasePath);
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  const url = `http://${BROWSER_HOST_NAME}:${server.port}/`;
  await firstRender(page, url); // warm-up: the server's caches and chromium's
  const first: number[] = [];
  const count: number[] = [];
  const firstApiStart: number[] = [];
  const firstApi: number[] = [];
  const changes = new Map<string, number[]>(STEPS.map(([name]) => [name, []]));
  const shownRows = new Map<string, number>();
  for (let round = 0; round < ROUNDS; round += 1) {
    const { renderMs, countMs, apiStartMs, apiMs } = await firstRender(page, url);
    first.push(renderMs);
    count.push(countMs);
    firstApiStart.push(apiStartMs);
    firstApi.push(apiMs);
    for (const [name, action] of STEPS) {
      const { ms, rows: shown } = await pageChange(page, action);
      changes.get(name)?.push(ms);
      shownRows.set(name, shown);
    }
  }
  const figure = (values: number[]) => ({
    medianMs: quantile(values, 0.5),
    p95Ms: quantile(values, 0.95),
  });
  const result = {
    bench: 'directory page render (bench/web-render.ts)',
    date: new Date().toISOString(),
    command: `npm run bench:web -- ${options.db === undefined ? `--rows ${ROWS}` : `--db ${options.db}`} --rounds ${ROUNDS}`,
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      loadAverageAtEnd: loadavg().map((load) => Math.round(load * 100) / 100),
      node: process.version,
      chromium: browser.version(),
    },
    users: rows,
    database: { dialect: 'sqlite', reused, importSeconds: reused ? undefined : importSeconds },
    rounds: ROUNDS,
    pageSize: 50,
    firstRender: {
      ...figure(first),
      // Where it goes: navigation to the page's request for its rows, and that request.
      apiRequestStartedAt: figure(firstApiStart),
      apiRequest: figure(firstApi),
    },
    pageChanges: Object.fromEntries(
      STEPS.map(([name]) => [
        name,
        { ...figure(changes.get(name) ?? []), rows: shownRows.get(name) },
      ]),
    ),
    countShownFromNavigation: figure(count),
  };
  const text = JSON.stringify(result, null, 2);
  console.log(text);
  await writeFile(new URL('./results/web-render.json', import.meta.url), text + '\n');
} finally {
  await browser.close();
  server.child.kill('SIGTERM');
  await once(server.child, 'exit');
  await rm(dir, { recursive: true, force: true });
}
