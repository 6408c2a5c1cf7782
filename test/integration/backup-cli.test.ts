import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { makeFifo, rehashBackup, setField } from '../helpers/backup-drills.js';
import { REPO_ROOT } from '../helpers/paths.js';

const BIN = join(REPO_ROOT, 'dist/main.js');

/** The built binary in a temp folder with its own SQLite database; stdin is not a terminal. */
async function createCli(t: TestContext) {
  const dir = await mkdtemp(join(tmpdir(), 'users-api-backup-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const env = {
    PATH: process.env.PATH,
    DATABASE_URL: `sqlite:${join(dir, 'users.db')}`,
    BACKUP_DIR: join(dir, 'backups'),
    SERVER_NAME: 'cli-test',
  };
  const run = async (args: string[], extraEnv: Record<string, string> = {}) => {
    try {
      // Bounded: a command stuck on a file (a FIFO) is killed and fails its test instead of CI.
      const { stdout, stderr } = await promisify(execFile)(process.execPath, [BIN, ...args], {
        cwd: dir,
        env: { ...env, ...extraEnv },
        timeout: 30_000,
        killSignal: 'SIGKILL',
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code: number; killed: boolean; stdout: string; stderr: string };
      if (failed.killed)
        throw new Error(`users-api ${args.join(' ')} did not end within 30 s`, {
          cause: error,
        });
      return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
    }
  };
  return { dir, run };
}

describe('users-api backup / verify / restore (built binary)', () => {
  it('backs up, verifies, refuses to restore without --yes, restores with it', async (t) => {
    const { dir, run } = await createCli(t);
    await run(['import', '--create', join(REPO_ROOT, 'data/users.csv')]);
    const backup = await run(['backup']);
    assert.equal(backup.code, 0, backup.stderr);
    assert.match(
      backup.stdout,
      /^backup written: .*\/backups\/users-\d{8}T\d{6}\.\d{3}Z\.ndjson\.gz \(1000 users, taken .* from sqlite \(primary\) on cli-test, format 1, schema \d{4}-[a-z0-9-]+, sha256 [0-9a-f]{64}\)\n$/,
    );
    const [file] = (await readdir(join(dir, 'backups'))).filter((name) => name.endsWith('.gz'));
    const path = join(dir, 'backups', file!);

    const verified = await run(['verify', path]);
    assert.equal(verified.code, 0);
    assert.match(verified.stdout, /^ok: .*: 1000 users, taken /);

    await run(['import', join(REPO_ROOT, 'test/fixtures/json/users.json'), '--mode', 'replace']);
    const unconfirmed = await run(['restore', path]);
    assert.deepEqual(unconfirmed, {
      code: 2,
      stdout: '',
      stderr: `users-api: restore replaces every user in sqlite:${join(dir, 'users.db')}: pass --yes to confirm (there is no terminal to ask on)\n`,
    });
    assert.equal((await run(['count'])).stdout, '2\n');

    const restored = await run(['restore', path, '--yes']);
    assert.equal(restored.code, 0, restored.stderr);
    assert.match(restored.stdout, /^restored 1000 users into sqlite:.*\/users\.db from /);
    assert.equal((await run(['count'])).stdout, '1000\n');
  });

  it('restores into a lost database only with --create; without it exits 2 and creates nothing', async (t) => {
    const { dir, run } = await createCli(t);
    await run(['import', '--create', join(REPO_ROOT, 'data/users.csv')]);
    await run(['backup']);
    const [file] = (await readdir(join(dir, 'backups'))).filter((name) => name.endsWith('.gz'));
    const path = join(dir, 'backups', file!);
    const lost = join(dir, 'lost', 'users.db');
    const env = { DATABASE_URL: `sqlite:${lost}` };

    const refused = await run(['restore', path, '--yes'], env);
    assert.deepEqual(refused, {
      code: 2,
      stdout: '',
      stderr: `users-api: database not found: ${lost}; nothing was created (pass --create to create it)\n`,
    });
    assert.deepEqual((await readdir(dir)).sort(), ['backups', 'users.db']);

    const restored = await run(['restore', path, '--yes', '--create'], env);
    assert.equal(restored.code, 0, restored.stderr);
    assert.match(restored.stdout, new RegExp(`^restored 1000 users into sqlite:${lost} from `));
    assert.deepEqual(await run(['count'], env), { code: 0, stdout: '1000\n', stderr: '' });
  });

  it('exits 2 with a clear message for bad files, and changes nothing', async (t) => {
    const { dir, run } = await createCli(t);
    await run(['import', '--create', join(REPO_ROOT, 'data/users.csv')]);
    await run(['backup', '--out', join(dir, 'out')]);
    const [file] = (await readdir(join(dir, 'out'))).filter((name) => name.endsWith('.gz'));
    const bytes = await readFile(join(dir, 'out', file!));
    const truncated = join(dir, 'truncated.ndjson.gz');
    await writeFile(truncated, bytes.subarray(0, bytes.length - 100));
    for (const command of ['verify', 'restore']) {
      const args = command === 'restore' ? ['--yes'] : [];
      const cut = await run([command, truncated, ...args]);
      assert.deepEqual(cut, {
        code: 2,
        stdout: '',
        stderr: `users-api: ${truncated} is not a valid users-api backup: truncated: the compressed data ends early (the file was cut short)\n`,
      });
      const csv = await run([command, join(REPO_ROOT, 'data/users.csv'), ...args]);
      assert.equal(csv.code, 2);
      assert.match(csv.stderr, /is not a valid users-api backup: it is not gzip-compressed/);
      const missing = await run([command, join(dir, 'nope.ndjson.gz'), ...args]);
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /file not found/);
    }
    assert.equal((await run(['count'])).stdout, '1000\n');
  });

  it('verify and restore refuse a re-hashed backup whose rows break the import rules', async (t) => {
    const { dir, run } = await createCli(t);
    await run(['import', '--create', join(REPO_ROOT, 'data/users.csv')]);
    await run(['backup', '--out', join(dir, 'out')]);
    const [file] = (await readdir(join(dir, 'out'))).filter((name) => name.endsWith('.gz'));
    const tampered = join(dir, 'tampered.ndjson.gz');
    await rehashBackup(join(dir, 'out', file!), tampered, (rows) => {
      setField(rows[0]!, 'NAME', 'N'.repeat(60_000));
      setField(rows[499]!, 'STATE', 'ZZ');
      setField(rows[999]!, 'USER_DATE', '99/99/99');
    });
    await run(['import', join(REPO_ROOT, 'test/fixtures/json/users.json'), '--mode', 'replace']);
    for (const args of [
      ['verify', tampered],
      ['restore', tampered, '--yes'],
    ]) {
      const refused = await run(args);
      assert.equal(refused.code, 2, refused.stderr);
      assert.equal(refused.stdout, '');
      const [first, ...rest] = refused.stderr.trimEnd().split('\n');
      assert.match(first!, /tampered\.ndjson\.gz is not a valid users-api backup: .*line 2: NAME/);
      assert.deepEqual(rest, [
        '  line 2: NAME: longer than 255 characters',
        '  line 501: STATE: "ZZ" is not a US state, DC or territory code (e.g. NY)',
        '  line 1001: USER_DATE: "99/99/99" has no month 99',
      ]);
    }
    assert.equal((await run(['count'])).stdout, '2\n');
  });

  it('verify and restore refuse a FIFO or a device at once; a symlink given to them is followed', async (t) => {
    const { dir, run } = await createCli(t);
    await run(['import', '--create', join(REPO_ROOT, 'data/users.csv')]);
    await run(['backup', '--out', join(dir, 'out')]);
    const [file] = (await readdir(join(dir, 'out'))).filter((name) => name.endsWith('.gz'));
    const fifo = join(dir, 'fifo.ndjson.gz');
    // No release needed: a command stuck on it is killed by run's timeout.
    makeFifo(fifo);
    for (const command of ['verify', 'restore']) {
      const args = command === 'restore' ? ['--yes'] : [];
      const piped = await run([command, fifo, ...args]);
      assert.deepEqual(piped, {
        code: 2,
        stdout: '',
        stderr: `users-api: ${fifo} is not a valid users-api backup: it is a FIFO, not a regular file\n`,
      });
      const device = await run([command, '/dev/zero', ...args]);
      assert.equal(device.code, 2);
      assert.match(
        device.stderr,
        /\/dev\/zero is not a valid users-api backup: it is a character device/,
      );
    }
    // An operator's own path may be a link (e.g. latest.ndjson.gz to the newest backup).
    const latest = join(dir, 'latest.ndjson.gz');
    await symlink(join(dir, 'out', file!), latest);
    const verified = await run(['verify', latest]);
    assert.equal(verified.code, 0, verified.stderr);
    await run(['import', join(REPO_ROOT, 'test/fixtures/json/users.json'), '--mode', 'replace']);
    const restored = await run(['restore', latest, '--yes']);
    assert.equal(restored.code, 0, restored.stderr);
    assert.equal((await run(['count'])).stdout, '1000\n');
  });

  it('runs as a scheduler: a backup at start, JSON log lines, exit 0 on SIGTERM', async (t) => {
    const { dir, run } = await createCli(t);
    await run(['import', '--create', join(REPO_ROOT, 'data/users.csv')]);
    // 600h is past setTimeout's range (~24.8 days): node would fire at once, and the scheduler
    // used to take backup after backup.
    const scheduler = spawn(process.execPath, [BIN, 'backup', '--every', '600h', '--keep', '5'], {
      cwd: dir,
      env: {
        PATH: process.env.PATH,
        DATABASE_URL: `sqlite:${join(dir, 'users.db')}`,
        BACKUP_DIR: join(dir, 'backups'),
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    t.after(() => scheduler.kill('SIGKILL'));
    const exited = once(scheduler, 'exit');
    const lines: Record<string, unknown>[] = [];
    createInterface({ input: scheduler.stdout }).on('line', (line) => {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    });
    for (let tries = 0; tries < 100 && !lines.some((line) => line.event === 'backup'); tries += 1)
      await new Promise((resolve) => setTimeout(resolve, 100));
    await new Promise((resolve) => setTimeout(resolve, 1000));
    scheduler.kill('SIGTERM');
    assert.deepEqual(await exited, [0, null]);
    const runs = lines.filter((line) => line.event === 'backup');
    assert.equal(runs.length, 1, JSON.stringify(lines));
    assert.equal(runs[0]!.result, 'ok');
    assert.equal(runs[0]!.rows, 1000);
    const files = (await readdir(join(dir, 'backups'))).filter((name) => name.endsWith('.gz'));
    assert.deepEqual(files, [runs[0]!.file]);
  });

  it('exits 2 for bad --every and --keep', async (t) => {
    const { run } = await createCli(t);
    const every = await run(['backup', '--every', '6']);
    assert.equal(every.code, 2);
    assert.match(every.stderr, /--every 6 is not a duration/);
    const keep = await run(['backup', '--keep', '0']);
    assert.equal(keep.code, 2);
    assert.match(keep.stderr, /--keep 0 must be a whole number of backups, at least 1/);
  });
});
