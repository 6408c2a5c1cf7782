import type { TestContext } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { BROWSER_HOST_NAME, launchChromium } from '../../scripts/launch-chromium.js';
import { requireBinary } from './external-services.js';

/** A name other than 127.0.0.1 or localhost, which browsers treat as secure contexts. */
export const TEST_HOST_NAME = BROWSER_HOST_NAME;

/**
 * Debian's headless chromium, closed when the test ends, or undefined (the test skipped loudly;
 * under CI=true a missing chromium fails). `TEST_HOST_NAME` resolves to 127.0.0.1, so pages
 * load over plain HTTP from a host name as they do behind a proxy (the CSP case). Launched as
 * the page bench and the screenshots launch it (scripts/launch-chromium.ts).
 */
export async function launchBrowser(t: TestContext): Promise<Browser | undefined> {
  const executablePath = await requireBinary(t, ['chromium'], 'chromium');
  if (executablePath === undefined) return undefined;
  const browser = await launchChromium(executablePath);
  t.after(() => browser.close());
  return browser;
}

/**
 * What went wrong on a page, collected as it happens: failed requests, 4xx/5xx responses,
 * console errors (CSP violations are reported there) and uncaught script errors. `expected`
 * lets a test allow the responses it provokes on purpose.
 */
export function watchPageProblems(
  page: Page,
  expected: (url: string, status: number) => boolean = () => false,
): string[] {
  const problems: string[] = [];
  page.on('requestfailed', (request) =>
    problems.push(`${request.url()} failed: ${request.failure()?.errorText}`),
  );
  page.on('response', (response) => {
    if (response.status() >= 400 && !expected(response.url(), response.status())) {
      problems.push(`${response.url()} ${response.status()}`);
    }
  });
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  return problems;
}
