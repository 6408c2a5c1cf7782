import { chromium, type Browser } from 'playwright-core';

/** A name other than 127.0.0.1 or localhost, which browsers treat as secure contexts. */
export const BROWSER_HOST_NAME = 'users-api.test';

/** Where Debian's package puts it; `npx playwright install` cannot download browsers here. */
export const CHROMIUM_PATH = '/usr/bin/chromium';

/**
 * Debian's headless chromium as the browser tests, the page bench and the screenshots run it:
 * offline (no background networking, updates or sync), a fresh profile, and `BROWSER_HOST_NAME`
 * resolved to 127.0.0.1, so pages load over plain HTTP from a host name as behind a proxy.
 */
export function launchChromium(executablePath: string = CHROMIUM_PATH): Promise<Browser> {
  return chromium.launch({
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
      `--host-resolver-rules=MAP ${BROWSER_HOST_NAME} 127.0.0.1`,
    ],
  });
}
