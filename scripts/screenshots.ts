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
  /** Resolves once the page shows what the picture is of. */
  ready: (page: Page) => Promise<unknown>;
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
      await shot.ready(page);
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
