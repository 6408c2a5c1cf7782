import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { startBuiltServer } from '../helpers/child-server.js';
import { REPO_ROOT } from '../helpers/paths.js';

const ADMIN_TOKEN = 'admin-from-a-file-0123456789abcdef';
const METRICS_TOKEN = 'metrics-from-a-file-0123456789abcdef';

async function secretsFolder(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'users-api-secrets-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  // As compose mounts secrets: one file each, a trailing newline as `echo` or an editor leaves.
  await writeFile(join(dir, 'admin_token'), `${ADMIN_TOKEN}\n`);
  await writeFile(join(dir, 'metrics_token'), `${METRICS_TOKEN}\n`);
  await chmod(join(dir, 'admin_token'), 0o600);
  await chmod(join(dir, 'metrics_token'), 0o600);
  return dir;
}

describe('secrets from files (*_FILE)', () => {
  it('the built server takes its admin and metrics tokens from files, and never logs them', async (t) => {
    const dir = await secretsFolder(t);
    const server = await startBuiltServer(t, dir, {
      DATABASE_URL: `sqlite:${join(dir, 'users.db')}`,
      BACKUP_DIR: join(dir, 'backups'),
      ADMIN_TOKEN_FILE: join(dir, 'admin_token'),
      METRICS_TOKEN_FILE: 'metrics_token', // relative: against the working folder
      DATA_FILE: join(REPO_ROOT, 'data', 'users.csv'),
    });
    const get = (path: string, token?: string) =>
      fetch(`${server.url}${path}`, {
        headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      });

    assert.equal((await get('/admin/backups')).status, 401);
    assert.equal((await get('/admin/backups', `${ADMIN_TOKEN}x`)).status, 401);
    const listing = await get('/admin/backups', ADMIN_TOKEN);
    assert.equal(listing.status, 200, await listing.clone().text());
    assert.equal((await get('/metrics')).status, 401);
    assert.equal((await get('/metrics', ADMIN_TOKEN)).status, 401);
    assert.equal((await get('/metrics', METRICS_TOKEN)).status, 200);

    assert.equal(await server.stop(), 0);
    const log = server.lines.join('\n');
    assert.ok(log.includes('"msg":"stopped"'), log);
    assert.ok(!log.includes(ADMIN_TOKEN) && !log.includes(METRICS_TOKEN), 'a token is logged');
  });

  it('a token set both directly and from a file stops the start with one line naming both', async (t) => {
    const dir = await secretsFolder(t);
    const run = promisify(execFile)(process.execPath, [join(REPO_ROOT, 'dist/main.js'), 'serve'], {
      cwd: dir,
      env: {
        PATH: process.env.PATH,
        PORT: '0',
        HOST: '127.0.0.1',
        DATABASE_URL: `sqlite:${join(dir, 'users.db')}`,
        ADMIN_TOKEN,
        ADMIN_TOKEN_FILE: join(dir, 'admin_token'),
      },
    });
    await assert.rejects(run, (error: { code: number; stderr: string }) => {
      assert.equal(error.code, 1);
      assert.equal(
        error.stderr.trim(),
        'users-api: configuration error: ADMIN_TOKEN and ADMIN_TOKEN_FILE are both set: set only one of them',
      );
      return true;
    });
  });

  it('an unreadable file stops the start naming the variable and the path, not the content', async (t) => {
    const dir = await secretsFolder(t);
    const run = promisify(execFile)(process.execPath, [join(REPO_ROOT, 'dist/main.js'), 'serve'], {
      cwd: dir,
      env: {
        PATH: process.env.PATH,
        PORT: '0',
        DATABASE_URL: `sqlite:${join(dir, 'users.db')}`,
        METRICS_TOKEN_FILE: join(dir, 'missing'),
      },
    });
    await assert.rejects(run, (error: { code: number; stderr: string }) => {
      assert.equal(error.code, 1);
      assert.equal(
        error.stderr.trim(),
        `users-api: configuration error: METRICS_TOKEN_FILE=${JSON.stringify(join(dir, 'missing'))} cannot be read (ENOENT)`,
      );
      return true;
    });
  });
});
