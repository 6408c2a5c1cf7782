import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { findBinary } from '../../scripts/local-cluster.js';
import { freePort } from '../../scripts/mariadb-pair.js';
import { REPO_ROOT } from '../helpers/paths.js';

const STATS_PASSWORD = 'stats-from-a-file-0123456789';

describe('deploy/haproxy/haproxy.cfg: the stats password from a second config file', () => {
  it('asks for the password from a hashed userlist file, accepts it, and refuses to start without one', async (t) => {
    const haproxy = findBinary('haproxy');
    const openssl = findBinary('openssl');
    if (haproxy === undefined || openssl === undefined) {
      const message = 'needs haproxy and openssl (apt-get install -y haproxy openssl)';
      if (process.env.CI === 'true') throw new Error(`${message}: required under CI=true`);
      process.stderr.write(`\n!!! SKIPPING: ${message}\n\n`);
      return (t as { skip(message?: string): void }).skip(message);
    }
    const dir = await mkdtemp(join(tmpdir(), 'users-api-stats-file-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    // What an operator keeps as a secret file: the userlist with a SHA-512 crypt hash.
    const { stdout: hash } = await promisify(execFile)(openssl, ['passwd', '-6', STATS_PASSWORD]);
    const users = join(dir, 'stats-users.cfg');
    await writeFile(users, `userlist stats_users\n    user admin password ${hash.trim()}\n`);
    const config = join(REPO_ROOT, 'deploy/haproxy/haproxy.cfg');
    const statsPort = await freePort();
    const env = {
      PATH: process.env.PATH,
      APP1_ADDR: '127.0.0.1:9',
      APP2_ADDR: '127.0.0.1:9',
      LB_ADDR: '127.0.0.1',
      LB_PORT: String(await freePort()),
      STATS_ADDR: '127.0.0.1',
      STATS_PORT: String(statsPort),
    };

    await assert.rejects(
      promisify(execFile)(haproxy, ['-c', '-f', config], { env }),
      /unable to find userlist 'stats_users'/,
    );
    const child = spawn(haproxy, ['-db', '-f', config, '-f', users], {
      env,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const exited = once(child, 'exit');
    t.after(async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    });
    const url = `http://127.0.0.1:${statsPort}/`;
    const basic = (password: string) => ({
      authorization: `Basic ${Buffer.from(`admin:${password}`).toString('base64')}`,
    });
    let anonymous: Response | undefined;
    // Bounded: until HAProxy listens (at most 100 × 100 ms).
    for (let tries = 0; tries < 100 && anonymous === undefined; tries += 1) {
      anonymous = await fetch(url).catch(() => undefined);
      if (anonymous === undefined) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.equal(anonymous?.status, 401);
    assert.equal((await fetch(url, { headers: basic('wrong-password') })).status, 401);
    assert.equal((await fetch(url, { headers: basic(STATS_PASSWORD) })).status, 200);
    assert.equal((await fetch(`${url};csv`, { headers: basic(STATS_PASSWORD) })).status, 200);
  });
});
