import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { REPO_ROOT } from '../helpers/paths.js';

/** `npm run secrets:init -- ...args`, as an operator runs it; never rejects. */
function secretsInit(args: readonly string[]) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      'npm',
      ['run', '--silent', 'secrets:init', '--', ...args],
      { cwd: REPO_ROOT, timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : 1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'users-api-secrets-init-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function contents(dir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const name of (await readdir(dir)).sort()) {
    files[name] = await readFile(join(dir, name), 'utf8');
  }
  return files;
}

const PASSWORDS = [
  'admin_token',
  'db_app_password',
  'db_replication_password',
  'db_root_password',
  'haproxy_stats_password',
  'metrics_token',
];

describe('npm run secrets:init', () => {
  it('makes every secret file, random, 0644 in a 0700 folder, and prints no value', async (t) => {
    const dir = join(await tempDir(t), 'secrets');
    const { code, stdout, stderr } = await secretsInit([dir]);
    assert.equal(code, 0, stderr);
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    const files = await contents(dir);
    assert.deepEqual(
      Object.keys(files),
      [
        ...PASSWORDS,
        'db_app_password_hash',
        'db_replication_password_hash',
        'db_root_password_hash',
        'haproxy_stats_userlist',
      ].sort(),
    );
    for (const name of Object.keys(files)) {
      assert.equal((await stat(join(dir, name))).mode & 0o777, 0o644, name);
      assert.match(stdout, new RegExp(`wrote .*/${name}$`, 'm'));
    }
    for (const name of PASSWORDS) {
      assert.match(files[name]!, /^[0-9a-f]{64}$/, name);
    }
    assert.equal(new Set(PASSWORDS.map((name) => files[name])).size, PASSWORDS.length);
    for (const value of Object.values(files)) {
      assert.ok(!stdout.includes(value.trim()) && !stderr.includes(value.trim()));
    }
    // The hashes are MariaDB's mysql_native_password of each password file.
    for (const name of ['db_app_password', 'db_replication_password', 'db_root_password']) {
      const once = createHash('sha1').update(files[name]!).digest();
      const hash = createHash('sha1').update(once).digest('hex').toUpperCase();
      assert.equal(files[`${name}_hash`], `*${hash}\n`, name);
    }
    // HAProxy's userlist: a SHA-512 crypt of the stats password.
    const [, hash] =
      /^userlist stats_users\n {4}user admin password '(\$6\$[^']+)'\n$/.exec(
        files.haproxy_stats_userlist!,
      ) ?? [];
    assert.ok(hash, files.haproxy_stats_userlist);
    const salt = hash.split('$')[2]!;
    const again = execFileSync('openssl', ['passwd', '-6', '-salt', salt, '-stdin'], {
      input: files.haproxy_stats_password,
    });
    assert.equal(again.toString().trim(), hash);
  });

  it('never overwrites: a second run writes nothing, a missing file alone is made again', async (t) => {
    const dir = join(await tempDir(t), 'secrets');
    assert.equal((await secretsInit([dir])).code, 0);
    const first = await contents(dir);
    const second = await secretsInit([dir]);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /already holds every secret; nothing written/);
    assert.deepEqual(await contents(dir), first);

    await unlink(join(dir, 'metrics_token'));
    await unlink(join(dir, 'haproxy_stats_userlist'));
    const third = await secretsInit([dir]);
    assert.equal(third.code, 0, third.stderr);
    assert.deepEqual(third.stdout.trim().split('\n'), [
      `secrets-init: wrote ${dir}/metrics_token`,
      `secrets-init: wrote ${dir}/haproxy_stats_userlist`,
    ]);
    const now = await contents(dir);
    assert.notEqual(now.metrics_token, first.metrics_token);
    // The userlist is derived again from the password that was kept.
    assert.equal(now.haproxy_stats_password, first.haproxy_stats_password);
    for (const name of Object.keys(first).filter(
      (n) => n !== 'metrics_token' && !n.endsWith('userlist'),
    )) {
      assert.equal(now[name], first[name], name);
    }
  });

  it('refuses a folder it cannot make, a file, and a hash whose password is gone', async (t) => {
    const root = await tempDir(t);
    const missing = await secretsInit([join(root, 'no-such-folder', 'secrets')]);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /parent folder .*no-such-folder does not exist/);
    assert.ok(!existsSync(join(root, 'no-such-folder')));

    await writeFile(join(root, 'a-file'), 'x');
    const file = await secretsInit([join(root, 'a-file')]);
    assert.notEqual(file.code, 0);
    assert.match(file.stderr, /a-file exists and is not a folder/);
    assert.equal(await readFile(join(root, 'a-file'), 'utf8'), 'x');

    const dir = join(root, 'secrets');
    assert.equal((await secretsInit([dir])).code, 0);
    await unlink(join(dir, 'db_app_password'));
    const hash = await readFile(join(dir, 'db_app_password_hash'), 'utf8');
    const orphan = await secretsInit([dir]);
    assert.notEqual(orphan.code, 0);
    assert.match(orphan.stderr, /db_app_password_hash exists without .*db_app_password/);
    assert.ok(
      !existsSync(join(dir, 'db_app_password')),
      'no password that the hash does not match',
    );
    assert.equal(await readFile(join(dir, 'db_app_password_hash'), 'utf8'), hash);

    const extra = await secretsInit([dir, 'two']);
    assert.notEqual(extra.code, 0);
    assert.match(extra.stderr, /usage: /);
  });
});
