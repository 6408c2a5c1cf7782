import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { fixture, REPO_ROOT } from '../helpers/paths.js';

const BIN = join(REPO_ROOT, 'dist/main.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the built binary (what `npx users-api` runs) in a temp folder with its own database. */
async function createCli(t: TestContext) {
  const dir = await mkdtemp(join(tmpdir(), 'users-api-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const env = { PATH: process.env.PATH, DATABASE_URL: `sqlite:${join(dir, 'users.db')}` };
  const run = async (args: string[], extraEnv: Record<string, string> = {}): Promise<Run> => {
    try {
      const { stdout, stderr } = await promisify(execFile)(process.execPath, [BIN, ...args], {
        cwd: dir,
        env: { ...env, ...extraEnv },
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code: number; stdout: string; stderr: string };
      return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
    }
  };
  return { dir, run };
}

describe('users-api CLI (built binary)', () => {
  it('imports a file, then counts it', async (t) => {
    const { run } = await createCli(t);
    assert.deepEqual(await run(['import', join(REPO_ROOT, 'data/users.csv')]), {
      code: 0,
      stdout: 'imported 1000 users (mode if-empty)\n',
      stderr: '',
    });
    assert.deepEqual(await run(['count']), { code: 0, stdout: '1000\n', stderr: '' });
    const again = await run(['import', join(REPO_ROOT, 'data/users.csv')]);
    assert.equal(again.code, 0);
    assert.match(again.stdout, /^skipped: the users table is not empty \(1000 users\)/);
    const appended = await run(['import', fixture('json/users.json'), '--mode', 'append']);
    assert.equal(appended.stdout, 'imported 2 users (mode append)\n');
    assert.equal((await run(['count'])).stdout, '1002\n');
  });

  it('exits 2 with every bad line on stderr and imports nothing', async (t) => {
    const { run } = await createCli(t);
    const result = await run(['import', fixture('csv/several-bad-rows.csv')]);
    assert.equal(result.code, 2);
    assert.equal(result.stdout, '');
    assert.equal(
      result.stderr,
      [
        'users-api: 2 bad rows; nothing was imported',
        '  line 2: expected 5 fields (NAME,STREET,CITY,STATE,USER_DATE), found 4',
        '  line 3: STREET: must not be empty',
        '  line 3: STATE: "XX" is not a US state, DC or territory code (e.g. NY)',
        '  line 3: USER_DATE: "1/1/86" is not a date in dd/mm/yy form',
        '',
      ].join('\n'),
    );
    assert.equal((await run(['count'])).stdout, '0\n');
  });

  it('exits 2 for a missing file, an unknown format and a bad mode', async (t) => {
    const { dir, run } = await createCli(t);
    const missing = await run(['import', join(dir, 'nope.csv')]);
    assert.deepEqual(
      [missing.code, missing.stderr],
      [2, `users-api: file not found: ${join(dir, 'nope.csv')}\n`],
    );
    await writeFile(join(dir, 'users.txt'), 'x');
    const unknown = await run(['import', join(dir, 'users.txt')]);
    assert.equal(unknown.code, 2);
    assert.match(
      unknown.stderr,
      /cannot tell the format of .*users\.txt from its extension; pass --format csv\|json\|ndjson/,
    );
    const badMode = await run(['import', fixture('csv/crlf.csv'), '--mode', 'merge']);
    assert.equal(badMode.code, 2);
    assert.match(
      badMode.stderr,
      /option '--mode <mode>' argument 'merge' is invalid\. Allowed choices are if-empty, append, replace\./,
    );
  });

  it('exits 2 for usage errors and 0 for --help on each command', async (t) => {
    const { run } = await createCli(t);
    assert.equal((await run(['frobnicate'])).code, 2);
    assert.equal((await run(['import'])).code, 2);
    for (const command of ['serve', 'import', 'migrate', 'count', 'monitor']) {
      const help = await run([command, '--help']);
      assert.equal(help.code, 0, command);
      assert.match(help.stdout, new RegExp(`^Usage: users-api ${command}`), command);
    }
    assert.match((await run(['--help'])).stdout, /Commands:\n {2}serve/);
  });

  it('migrates idempotently', async (t) => {
    const { run } = await createCli(t);
    assert.deepEqual(await run(['migrate']), {
      code: 0,
      stdout: 'applied 0001-create-users, 0002-mysql-utf8mb4, 0003-users-query-indexes\n',
      stderr: '',
    });
    assert.deepEqual(await run(['migrate']), {
      code: 0,
      stdout: 'schema is up to date\n',
      stderr: '',
    });
  });

  it('exits 1 with one line naming a bad configuration variable', async (t) => {
    const { run } = await createCli(t);
    const result = await run(['count'], { DATABASE_URL: 'postgres://db/users' });
    assert.equal(result.code, 1);
    assert.equal(
      result.stderr,
      'users-api: configuration error: DATABASE_URL="postgres://db/users" is invalid: expected unset (SQLite at ./data/users.db), sqlite:PATH or mysql://USER:PASSWORD@HOST:PORT/DATABASE\n',
    );
  });
});
