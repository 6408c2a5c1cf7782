import assert from 'node:assert/strict';
import { chmod, chown, mkdir, mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import SqliteDatabase from 'better-sqlite3';
import { writesUnavailable } from '../../src/db/begin-write-transaction.js';
import type { AppError } from '../../src/errors.js';
import {
  isDatabaseCorruption,
  isDatabaseDataError,
  isDatabaseFailure,
} from '../../src/db/is-database-failure.js';
import { startBuiltServer } from '../helpers/child-server.js';
import { REPO_ROOT } from '../helpers/paths.js';
import { createTestApp } from '../helpers/test-app.js';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'users-api-failures-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** What a SQLite call threw (the test fails if it did not throw). */
function thrownBy(call: () => unknown): Error {
  try {
    call();
  } catch (error) {
    assert.ok(error instanceof Error);
    return error;
  }
  assert.fail('expected an error');
}

/** A real file-system error (the call's rejection). */
async function rejectionOf(promise: Promise<unknown>): Promise<Error> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  assert.ok(error instanceof Error, 'expected a rejection');
  return error;
}

describe('errors are named for what failed', () => {
  it('a database out of storage: a 503 that says so, not "unavailable"', () => {
    for (const full of [
      Object.assign(new Error("The table 'users' is full"), {
        code: 'ER_RECORD_FILE_FULL',
        errno: 1114,
        sqlState: 'HY000',
      }),
    ]) {
      const refused = writesUnavailable({ dialect: 'mysql' }, full) as AppError;
      assert.equal(refused.code, 'ERR_DB_PRIMARY_UNAVAILABLE');
      assert.match(refused.message, /out of storage .*nothing was written/);
    }
  });

  it('a BACKUP_DIR that cannot be a folder: POST /admin/backups names BACKUP_DIR, not the database', async (t) => {
    const dir = await tempDir(t);
    await writeFile(join(dir, 'a-file'), 'not a folder');
    const backupDir = join(dir, 'a-file', 'backups');
    const { app } = await createTestApp(t, { BACKUP_DIR: backupDir });
    await app.inject({ method: 'POST', url: '/addtosql' });
    const response = await app.inject({ method: 'POST', url: '/admin/backups' });
    assert.equal(response.statusCode, 500, response.body);
    assert.equal(response.headers['content-type'], 'application/problem+json; charset=utf-8');
    const problem = response.json<{ code: string; title: string; detail: string }>();
    assert.equal(problem.code, 'ERR_BACKUP_DIR_NOT_WRITABLE');
    assert.match(
      problem.detail,
      /^BACKUP_DIR cannot be written: ENOTDIR \(not a directory\) on mkdir;/,
    );
    assert.ok(!problem.detail.includes(dir), 'no absolute path in the answer');
    assert.ok(!problem.detail.includes('database'), problem.detail);
  });

  it('a BACKUP_DIR the server may not write (EACCES): the built server answers ERR_BACKUP_DIR_NOT_WRITABLE and logs the path', async (t) => {
    const dir = await tempDir(t);
    const backupDir = join(dir, 'backups');
    await mkdir(backupDir);
    await chmod(backupDir, 0o555);
    // root may write anywhere: run the server as nobody, who may write only its database.
    const asRoot = process.getuid?.() === 0;
    if (asRoot) {
      await chmod(dir, 0o755);
      await mkdir(join(dir, 'db'));
      await chown(join(dir, 'db'), 65534, 65534);
    } else {
      await mkdir(join(dir, 'db'));
    }
    const server = await startBuiltServer(
      t,
      dir,
      {
        DATABASE_URL: `sqlite:${join(dir, 'db', 'users.db')}`,
        BACKUP_DIR: backupDir,
        DATA_FILE: join(REPO_ROOT, 'data/users.csv'),
        SERVER_NAME: 'storage-test',
      },
      asRoot ? { uid: 65534, gid: 65534 } : {},
    );
    const response = await fetch(`${server.url}/admin/backups`, { method: 'POST' });
    const problem = (await response.json()) as { code: string; detail: string };
    assert.equal(response.status, 500, JSON.stringify(problem));
    assert.equal(problem.code, 'ERR_BACKUP_DIR_NOT_WRITABLE');
    assert.match(
      problem.detail,
      /^BACKUP_DIR cannot be written: EACCES \(permission denied\) on open;/,
    );
    assert.ok(!problem.detail.includes(dir), 'no absolute path in the answer');
    const requestId = response.headers.get('x-request-id') ?? '';
    // The operator finds the path in the log line with the same request id (bounded wait).
    const isFailureLine = (line: string) =>
      line.includes(`"reqId":"${requestId}"`) && line.includes('EACCES');
    for (let tries = 0; tries < 50 && !server.lines.some(isFailureLine); tries += 1) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.ok(server.lines.find(isFailureLine)?.includes(backupDir), server.lines.join('\n'));
  });

  it('a DATA_FILE the server cannot read is ERR_STORAGE_FAILED naming DATA_FILE, without its path', async (t) => {
    const dir = await tempDir(t);
    await writeFile(join(dir, 'a-file'), 'not a folder');
    const { app } = await createTestApp(t, { DATA_FILE: join(dir, 'a-file', 'users.csv') });
    const response = await app.inject({
      method: 'POST',
      url: '/addtosql',
      remoteAddress: '203.0.113.9',
    });
    assert.equal(response.statusCode, 500, response.body);
    const problem = response.json<{ code: string; detail: string }>();
    assert.equal(problem.code, 'ERR_STORAGE_FAILED');
    assert.equal(problem.detail, 'the configured DATA_FILE cannot be read on this server: ENOTDIR');
  });

  it('a BACKUP_DIR the server cannot list is ERR_STORAGE_FAILED, not the database', async (t) => {
    const dir = await tempDir(t);
    await writeFile(join(dir, 'a-file'), 'not a folder');
    const { app } = await createTestApp(t, { BACKUP_DIR: join(dir, 'a-file', 'backups') });
    const response = await app.inject({ method: 'GET', url: '/admin/backups' });
    assert.equal(response.statusCode, 500, response.body);
    const problem = response.json<{ code: string; detail: string }>();
    assert.equal(problem.code, 'ERR_STORAGE_FAILED');
    assert.match(
      problem.detail,
      /^a file operation on the server failed: ENOTDIR \(not a directory\) on scandir; the server log has the path under request id /,
    );
    assert.ok(!problem.detail.includes(dir), 'no absolute path in the answer');
  });

  it('a locked SQLite database is still a 503 ERR_DB_PRIMARY_UNAVAILABLE for writes', async (t) => {
    const { app, config } = await createTestApp(t);
    await app.inject({ method: 'POST', url: '/addtosql' });
    assert.equal(config.database.dialect, 'sqlite');
    // Another process holds the write lock past the busy timeout: the write is refused.
    const other = new SqliteDatabase(config.database.path);
    t.after(() => other.close());
    other.exec('BEGIN IMMEDIATE');
    const write = await app.inject({
      method: 'POST',
      url: '/addtosql?mode=append',
      headers: { 'content-type': 'text/csv' },
      payload: 'NAME,STREET,CITY,STATE,USER_DATE\nAda,S,C,NY,01/01/01\n',
    });
    other.exec('ROLLBACK');
    assert.equal(write.statusCode, 503, write.body);
    assert.equal(write.json<{ code: string }>().code, 'ERR_DB_PRIMARY_UNAVAILABLE');
  });

  it('classifies real SQLite and file-system errors: outage, corruption, data, or neither', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'x.db');
    const db = new SqliteDatabase(path, { timeout: 0 });
    t.after(() => db.close());
    db.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, name VARCHAR(3) NOT NULL)');
    db.exec("INSERT INTO t VALUES (1, 'a')");

    const notNull = thrownBy(() => db.exec('INSERT INTO t VALUES (2, NULL)'));
    const duplicate = thrownBy(() => db.exec("INSERT INTO t VALUES (1, 'b')"));
    for (const error of [notNull, duplicate]) {
      assert.equal(isDatabaseFailure(error), false, error.message);
      assert.equal(isDatabaseDataError(error), true, error.message);
      assert.equal(writesUnavailable({ dialect: 'sqlite' }, error), error);
    }

    const locker = new SqliteDatabase(path);
    t.after(() => locker.close());
    locker.exec('BEGIN IMMEDIATE');
    const busy = thrownBy(() => db.exec("INSERT INTO t VALUES (3, 'c')"));
    locker.exec('ROLLBACK');
    const cantOpen = thrownBy(
      () => new SqliteDatabase(join(dir, 'missing.db'), { fileMustExist: true }),
    );
    const reader = new SqliteDatabase(path, { readonly: true });
    t.after(() => reader.close());
    const readOnly = thrownBy(() => reader.exec("INSERT INTO t VALUES (4, 'd')"));
    const noTable = thrownBy(() => db.exec('SELECT * FROM users'));
    for (const error of [busy, cantOpen, readOnly, noTable]) {
      assert.equal(isDatabaseFailure(error), true, error.message);
      assert.equal(isDatabaseCorruption(error), false, error.message);
      assert.equal(isDatabaseDataError(error), false, error.message);
    }

    // A file whose header is not SQLite's, and one whose table pages were overwritten.
    const notADatabase = join(dir, 'garbage.db');
    await writeFile(notADatabase, Buffer.alloc(8192, 0x5a));
    const garbage = new SqliteDatabase(notADatabase);
    t.after(() => garbage.close());
    const notADb = thrownBy(() => garbage.exec('SELECT 1 FROM t'));
    const damaged = join(dir, 'damaged.db');
    const healthy = new SqliteDatabase(damaged);
    healthy.pragma('journal_mode = DELETE');
    healthy.exec('CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)');
    healthy.prepare('INSERT INTO t (name) VALUES (?)').run('x'.repeat(20_000));
    healthy.close();
    const file = await open(damaged, 'r+');
    await file.write(Buffer.alloc(4096, 0xff), 0, 4096, 4096);
    await file.close();
    const broken = new SqliteDatabase(damaged);
    t.after(() => broken.close());
    const corrupt = thrownBy(() => broken.prepare('SELECT * FROM t').all());
    assert.deepEqual(
      [notADb, corrupt].map((error) => (error as { code?: string }).code),
      ['SQLITE_NOTADB', 'SQLITE_CORRUPT'],
    );
    for (const error of [notADb, corrupt]) {
      assert.equal(isDatabaseCorruption(error), true, error.message);
      assert.equal(isDatabaseFailure(error), true, error.message);
    }

    // Our own disk's errors are not the database's.
    const notDir = await rejectionOf(
      import('node:fs/promises').then((fs) => fs.mkdir(join(path, 'sub'))),
    );
    assert.equal((notDir as { code?: string }).code, 'ENOTDIR');
    assert.equal(isDatabaseFailure(notDir), false);
    assert.equal(writesUnavailable({ dialect: 'sqlite' }, notDir), notDir);
  });
});
