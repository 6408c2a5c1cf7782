import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import { requireBinary } from '../helpers/external-services.js';
import { createTestApp } from '../helpers/test-app.js';

/** A name other than 127.0.0.1 or localhost, which browsers treat as secure contexts. */
const HOST_NAME = 'users-api.test';

describe('GET /docs in a real browser (Debian chromium, headless)', () => {
  it('renders Swagger UI when opened by a host name over plain HTTP, every asset loaded', async (t) => {
    const executablePath = await requireBinary(t, ['chromium'], 'chromium');
    if (executablePath === undefined) return;
    const { app } = await createTestApp(t);
    const url = new URL(await app.listen({ host: '127.0.0.1', port: 0 }));
    const browser = await chromium.launch({
      executablePath,
      timeout: 30_000,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--no-proxy-server',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        `--host-resolver-rules=MAP ${HOST_NAME} 127.0.0.1`,
      ],
    });
    t.after(() => browser.close());
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on('requestfailed', (request) =>
      problems.push(`${request.url()} failed: ${request.failure()?.errorText}`),
    );
    page.on('response', (response) => {
      if (response.status() >= 400) problems.push(`${response.url()} ${response.status()}`);
    });
    // CSP violations and script errors are reported on the console.
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));

    await page.goto(`http://${HOST_NAME}:${url.port}/docs`, { timeout: 15_000 });
    const operation = page.locator('.opblock-summary-path[data-path="/api"]').first();
    await operation.waitFor({ timeout: 15_000 }).catch((error: Error) => {
      assert.fail(`Swagger UI did not list GET /api: ${error.message}\n${problems.join('\n')}`);
    });
    const method = operation.locator('xpath=ancestor::*[contains(@class,"opblock-get")]');
    assert.equal(await method.count(), 1, 'GET /api is listed as a GET operation');
    assert.deepEqual(problems, []);
  });

  it('keeps the rest of its strict Content-Security-Policy', async (t) => {
    const { app } = await createTestApp(t);
    const response = await app.inject({ method: 'GET', url: '/docs' });
    assert.equal(response.statusCode, 200);
    const policy = new Map(
      String(response.headers['content-security-policy'])
        .split(';')
        .map((directive) => directive.trim().split(/\s+/))
        .filter(([name]) => name !== '')
        .map(([name = '', ...values]) => [name, values.join(' ')]),
    );
    assert.equal(policy.has('upgrade-insecure-requests'), false, 'upgrade-insecure-requests');
    assert.doesNotMatch(String(response.headers['content-security-policy']), /unsafe-/);
    for (const [name, value] of Object.entries({
      'default-src': "'self'",
      'base-uri': "'self'",
      'frame-ancestors': "'self'",
      'object-src': "'none'",
      'script-src': "'self'",
      'script-src-attr': "'none'",
    })) {
      assert.equal(policy.get(name), value, name);
    }
  });
});
