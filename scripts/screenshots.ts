/**
 * The README's screenshots: starts the built service on the bundled sample data (a temporary
 * SQLite file), opens each page in Debian's chromium as the browser tests do
 * (scripts/launch-chromium.ts) and saves a PNG of it under docs/images/.
 *
 *   npm run screenshots          # builds first
 *
 * A new page is one more entry in SHOTS: its path, what shows it is ready, and the file.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Page } from 'playwright-core';
import { BROWSER_HOST_NAME, launchChromium } from './launch-chromium.js';
import { freePort } from './mariadb-pair.js';
import { SERVE_NODE_FLAGS } from './serve-node-flags.js';

interface Shot {
  /** The page's path and query on the service. */
  path: string;
  /** Resolves once the page shows what the picture is of; `origin` is the service's. */
  ready: (page: Page, origin: string) => Promise<unknown>;
  /** Where the PNG goes, from the repository root. */
  file: string;
}

const SHOTS: readonly Shot[] = [
  {
    path: '/?state=NY&sort=-USER_DATE',
    ready: (page) =>
      Promise.all([
        page.locator('#results[aria-busy="false"] tbody tr').first().waitFor(),
        page.locator('#count', { hasText: /match/ }).waitFor(),
      ]),
    file: 'docs/images/directory.png',
  },
  {
    // The live page: its database servers, and a chart with some traffic in it (requests made
    // here while the page collects readings, one every STATUS_INTERVAL_MS below).
    path: '/status',
    ready: async (page, origin) => {
      await page.locator('#connection[data-state="live"]').waitFor({ timeout: 30_000 });
      await page.locator('#databases tbody tr').first().waitFor({ timeout: 30_000 });
      await page.locator('#problems-none:not([hidden])').waitFor({ timeout: 30_000 });
      // The chart spans 5 minutes: 75 s of traffic (a slow swell and ebb) fills a quarter of
      // it. Bounded: at most 300 rounds of 1 to 12 requests, 250 ms apart.
      const start = Date.now();
      for (let round = 0; round < 300 && Date.now() - start < 75_000; round += 1) {
        const burst = 1 + Math.round(11 * Math.sin((Math.PI * (Date.now() - start)) / 75_000) ** 2);
        await Promise.all(
          Array.from({ length: burst }, () =>
            fetch(`${origin}/api?limit=50`).then((response) => response.text()),
          ),
        );
        await sleep(250);
      }
      await page
        .locator('#chart-requestsPerSecond[data-readings] svg polyline')
        .waitFor({ timeout: 30_000 });
    },
    file: 'docs/images/status.png',
  },
];

const REPO_ROOT = new URL('..', import.meta.url).pathname;
const dir = await mkdtemp(join(tmpdir(), 'users-api-screenshots-'));
const port = await freePort();
const server = spawn(process.execPath, [...SERVE_NODE_FLAGS, 'dist/main.js', 'serve'], {
  cwd: REPO_ROOT,
  env: {
    PATH: process.env.PATH,
    DATABASE_URL: `sqlite:${join(dir, 'users.db')}`,
    DATA_FILE: join(REPO_ROOT, 'data/users.csv'),
    SERVER_NAME: 'webserver1',
    // The status page's chart: one reading every 500 ms, so a few seconds show a curve.
    STATUS_INTERVAL_MS: '500',
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
  },
  stdio: ['ignore', 'inherit', 'inherit'],
});
try {
  let up = false;
  for (let attempt = 0; attempt < 300 && !up; attempt += 1) {
    if (server.exitCode !== null) throw new Error(`the service exited with ${server.exitCode}`);
    up = await fetch(`http://127.0.0.1:${port}/healthcheck`).then(
      (response) => response.ok,
      () => false, // not listening yet: try again (bounded: 300 × 100 ms)
    );
    if (!up) await sleep(100);
  }
  if (!up) throw new Error('the service did not become ready within 30 s');
  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    for (const shot of SHOTS) {
      await page.goto(`http://${BROWSER_HOST_NAME}:${port}${shot.path}`, { timeout: 30_000 });
      await shot.ready(page, `http://127.0.0.1:${port}`);
      await page.screenshot({ path: join(REPO_ROOT, shot.file), fullPage: false });
      console.log(`wrote ${shot.file}`);
    }
  } finally {
    await browser.close();
  }
} finally {
  server.kill('SIGTERM');
  if (server.exitCode === null) await once(server, 'exit');
  await rm(dir, { recursive: true, force: true });
}
