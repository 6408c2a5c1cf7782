import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { launchBrowser, TEST_HOST_NAME, watchPageProblems } from '../helpers/browser.js';
import { createTestApp } from '../helpers/test-app.js';

describe('GET /docs in a real browser (Debian chromium, headless)', () => {
  it('renders Swagger UI when opened by a host name over plain HTTP, every asset loaded', async (t) => {
    const browser = await launchBrowser(t);
    if (browser === undefined) return;
    const { app } = await createTestApp(t);
    const url = new URL(await app.listen({ host: '127.0.0.1', port: 0 }));
    const page = await browser.newPage();
    const problems = watchPageProblems(page);

    await page.goto(`http://${TEST_HOST_NAME}:${url.port}/docs`, { timeout: 15_000 });
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
