import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { runCli, type CliIo } from '../../src/cli/run-cli.js';
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
        // A command that hangs (e.g. reading a FIFO) fails the test instead of stalling it.
        timeout: 30_000,
      });
      return { code: 0, stdout, stderr };
    } catch (error) {
      const failed = error as { code: number; stdout: string; stderr: string };
      return { code: failed.code, stdout: failed.stdout, stderr: failed.stderr };
    }
  };
  return { dir, run, database: join(dir, 'users.db') };
}

/** runCli in this process with a fake terminal that answers `answer` and records each question. */
async function runInProcess(args: string[], env: CliIo['env'], answer: boolean) {
  const out: string[] = [];
  const err: string[] = [];
  const questions: string[] = [];
  const code = await runCli(args, {
    env,
    stdout: (line) => out.push(line),
    stderr: (line) => err.push(line),
    stopSignal: () => new Promise(() => undefined),
    confirm: (question) => {
      questions.push(question);
      return Promise.resolve(answer);
    },
  });
  return { code, out, err, questions };
}

describe('users-api CLI (built binary)', () => {
  it('imports a file into a new database with --create, then counts it', async (t) => {
    const { run, database } = await createCli(t);
    assert.deepEqual(await run(['import', '--create', join(REPO_ROOT, 'data/users.csv')]), {
      code: 0,
      stdout: `imported 1000 users into sqlite:${database} (mode if-empty)\n`,
      stderr: '',
    });
    assert.deepEqual(await run(['count']), { code: 0, stdout: '1000\n', stderr: '' });
    const again = await run(['import', join(REPO_ROOT, 'data/users.csv')]);
    assert.equal(again.code, 0);
    assert.equal(
      again.stdout,
      `skipped: the users table in sqlite:${database} is not empty (1000 users); use --mode append or --mode replace\n`,
    );
    const appended = await run(['import', fixture('json/users.json'), '--mode', 'append']);
    assert.equal(appended.stdout, `imported 2 users into sqlite:${database} (mode append)\n`);
    assert.equal((await run(['count'])).stdout, '1002\n');
  });

  it('creates a database only for migrate and --create: other commands exit 2 and create nothing', async (t) => {
    const { dir, run } = await createCli(t);
    const folder = join(dir, 'nonexistent-dir');
    const missing = join(folder, 'x.db');
    const env = { DATABASE_URL: `sqlite:${missing}` };
    const csv = join(REPO_ROOT, 'data/users.csv');
    for (const args of [['count'], ['import', csv], ['backup', '--out', join(dir, 'out')]]) {
      const refused = await run(args, env);
      assert.equal(refused.code, 2, `${args[0]}: ${refused.stderr}`);
      assert.equal(refused.stdout, '');
      assert.match(refused.stderr, new RegExp(`^users-api: database not found: ${missing}; `));
      assert.equal(refused.stderr.split('\n').length, 2, 'one line');
      assert.deepEqual(await readdir(dir), [], `${args[0]} created something`);
    }
    const created = await run(['import', '--create', csv], env);
    assert.equal(created.code, 0, created.stderr);
    assert.equal((await run(['count'], env)).stdout, '1000\n');
    const migrated = join(dir, 'other/y.db');
    const migrate = await run(['migrate'], { DATABASE_URL: `sqlite:${migrated}` });
    assert.equal(migrate.code, 0, migrate.stderr);
    assert.match(migrate.stdout, new RegExp(` to sqlite:${migrated}\n$`));
  });

  it('checks the import file before the database: missing, a folder or a FIFO exit 2 naming it', async (t) => {
    const { dir, run } = await createCli(t);
    await run(['import', '--create', join(REPO_ROOT, 'data/users.csv')]);
    const missing = join(dir, 'nope.csv');
    assert.deepEqual(await run(['import', missing]), {
      code: 2,
      stdout: '',
      stderr: `users-api: file not found: ${missing}\n`,
    });
    const folder = join(dir, 'folder.csv');
    await mkdir(folder);
    assert.deepEqual(await run(['import', folder, '--mode', 'append']), {
      code: 2,
      stdout: '',
      stderr: `users-api: cannot import ${folder}: not a regular file\n`,
    });
    const fifo = join(dir, 'pipe.csv');
    execFileSync('mkfifo', [fifo]);
    assert.deepEqual(await run(['import', fifo, '--mode', 'replace']), {
      code: 2,
      stdout: '',
      stderr: `users-api: cannot import ${fifo}: not a regular file\n`,
    });
    assert.equal((await run(['count'])).stdout, '1000\n');
  });

  it('names the target database in the restore prompt and result lines', async (t) => {
    const { dir, run, database } = await createCli(t);
    await run(['import', '--create', join(REPO_ROOT, 'data/users.csv')]);
    const backup = await run(['backup', '--out', join(dir, 'out')]);
    assert.equal(backup.code, 0, backup.stderr);
    const [file] = (await readdir(join(dir, 'out'))).filter((name) => name.endsWith('.gz'));
    const path = join(dir, 'out', file!);
    const env = { DATABASE_URL: `sqlite:${database}`, LOG_LEVEL: 'silent' } as const;
    const declined = await runInProcess(['restore', path], env, false);
    assert.deepEqual(declined.questions, [
      `Replace every user in sqlite:${database} with the 1000 users of ${path}? [y/N] `,
    ]);
    assert.equal(declined.code, 2);
    const confirmed = await runInProcess(['restore', path], env, true);
    assert.equal(confirmed.code, 0, confirmed.err.join('\n'));
    assert.match(
      confirmed.out[0]!,
      new RegExp(`^restored 1000 users into sqlite:${database} from `),
    );
    const noTerminal = await run(['restore', path]);
    assert.equal(
      noTerminal.stderr,
      `users-api: restore replaces every user in sqlite:${database}: pass --yes to confirm (there is no terminal to ask on)\n`,
    );
  });

  it('exits 2 with every bad line on stderr and imports nothing', async (t) => {
    const { run } = await createCli(t);
    const result = await run(['import', '--create', fixture('csv/several-bad-rows.csv')]);
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
    const missing = await run(['import', '--create', join(dir, 'nope.csv')]);
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
    const { run, database } = await createCli(t);
    assert.deepEqual(await run(['migrate']), {
      code: 0,
      stdout: `applied 0001-create-users, 0002-mysql-utf8mb4, 0003-users-query-indexes, 0004-users-index-names, 0005-replication-heartbeat, 0006-users-row-version, 0007-idempotency-keys to sqlite:${database}\n`,
      stderr: '',
    });
    assert.deepEqual(await run(['migrate']), {
      code: 0,
      stdout: `the schema of sqlite:${database} is up to date\n`,
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
