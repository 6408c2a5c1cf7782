import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import {
  chmod,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { gunzipSync, gzipSync } from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import { readBackupStatus } from '../../src/backup/backup-status.js';
import { backupFileName } from '../../src/backup/backup-format.js';
import { listBackups } from '../../src/backup/list-backups.js';
import { readBackup } from '../../src/backup/read-backup.js';
import { runBackupSchedule } from '../../src/backup/run-backup-schedule.js';
import { takeBackup } from '../../src/backup/take-backup.js';
import type { Database } from '../../src/db/database.js';
import { countUsers } from '../../src/db/users-repository.js';
import {
  drillBackupDuringImport,
  drillBadFiles,
  drillReadsDuringRestore,
  drillTableDropped,
  drillWipedOut,
  importSample,
  makeFifo,
  primaryUsers,
  rehashBackup,
  releaseFifo,
  setField,
  within,
  type DrillContext,
} from '../helpers/backup-drills.js';
import { REPO_ROOT } from '../helpers/paths.js';
import { createTestApp } from '../helpers/test-app.js';
import { createTestDatabase } from '../helpers/test-database.js';

async function sqliteDrill(t: TestContext): Promise<DrillContext> {
  const { db, dir } = await createTestDatabase(t);
  return { db, dir: join(dir, 'backups') };
}

describe('restore drills on SQLite', () => {
  it('1: data wiped out → restore → identical rows, order and checksum', async (t) => {
    await drillWipedOut(await sqliteDrill(t));
  });

  it('2: users table dropped → restore recreates it', async (t) => {
    await drillTableDropped(await sqliteDrill(t));
  });

  it('3: truncated, flipped, foreign and newer files are refused; the table is untouched', async (t) => {
    await drillBadFiles(await sqliteDrill(t));
  });

  it('4: /api during a restore answers the old or the new full list, never a partial one', async (t) => {
    // The drill writes behind the app's back (no HTTP), so the app must look at the data version
    // on every request; otherwise its cache may show the previous list for API_CACHE_CHECK_MS.
    const { app, db, dir } = await createTestApp(t, { API_CACHE_CHECK_MS: '0' });
    await drillReadsDuringRestore({ db, dir: join(dir, 'backups') }, async () => {
      const response = await app.inject({ method: 'GET', url: '/api' });
      return { status: response.statusCode, body: response.body };
    });
  });

  it('5: a backup taken during an import holds the rows before it or after it, never a mix', async (t) => {
    await drillBackupDuringImport(await sqliteDrill(t));
  });

  it('listing and refusing backups leave no file open; a folder is refused by name', async (t) => {
    const { db, dir } = await sqliteDrill(t);
    await importSample(db);
    const good = await takeBackup(db, { dir, serverName: 'drill', keep: 3 });
    const bytes = await readFile(good.path);
    const truncated = join(dir, 'truncated.ndjson.gz');
    await writeFile(truncated, bytes.subarray(0, bytes.length - 4));
    const openFiles = async () => (await readdir('/proc/self/fd')).length;

    const before = await openFiles();
    for (let round = 0; round < 20; round += 1) {
      assert.equal((await listBackups(dir)).length, 1);
      await assert.rejects(() => readBackup(truncated), /truncated/);
    }
    // A destroyed stream closes its descriptor a few ticks later.
    for (let tick = 0; tick < 10; tick += 1) await new Promise((done) => setImmediate(done));
    assert.ok((await openFiles()) <= before, `${(await openFiles()) - before} files left open`);

    await assert.rejects(() => readBackup(dir), {
      code: 'ERR_BACKUP_INVALID',
      message: `${dir} is not a valid users-api backup: it is a directory, not a regular file`,
    });
  });

  it('a backup the server may not read is listed with its problem; the rest is served', async (t) => {
    const { db, dir } = await sqliteDrill(t);
    await importSample(db);
    const good = await takeBackup(db, { dir, serverName: 'drill' });
    const locked = join(dir, backupFileName(new Date(Date.UTC(2020, 0, 1))));
    await writeFile(locked, await readFile(good.path), { mode: 0o000 });
    await chmod(locked, 0o000);
    // Root reads anything: the listing then runs as nobody, whom the mode binds.
    const asRoot = process.getuid?.() === 0;
    if (asRoot) {
      for (const folder of [dirname(dir), dir]) await chmod(folder, 0o755);
      await chmod(good.path, 0o644);
    }
    const listings = asRoot
      ? (JSON.parse(
          (
            await promisify(execFile)(
              process.execPath,
              [
                '--import',
                'tsx',
                '-e',
                `import(${JSON.stringify(join(REPO_ROOT, 'src/backup/list-backups.ts'))}).then(async (m) => console.log(JSON.stringify(await m.listBackups(${JSON.stringify(dir)}))))`,
              ],
              { cwd: REPO_ROOT, uid: 65534, gid: 65534 },
            )
          ).stdout,
        ) as Awaited<ReturnType<typeof listBackups>>)
      : await listBackups(dir);
    assert.deepEqual(
      listings.map((listing) => ('problem' in listing ? listing.problem : listing.file)),
      [good.file, 'cannot be read: EACCES'],
    );
  });

  it('keeps the replaced table as users_prev until the next restore', async (t) => {
    const ctx = await sqliteDrill(t);
    await drillWipedOut(ctx);
    const tables = async () =>
      (await ctx.db.write.introspection.getTables()).map((table) => table.name).sort();
    assert.ok((await tables()).includes('users_prev'));
    assert.ok(!(await tables()).includes('users_staging'));
  });
});

describe('backup retention and scheduling', () => {
  async function filesIn(dir: string): Promise<string[]> {
    return (await readdir(dir)).filter((name) => name.startsWith('users-')).sort();
  }

  it('6: --keep 3 keeps exactly the 3 newest backups; other files are left alone', async (t) => {
    const { db, dir } = await sqliteDrill(t);
    await importSample(db);
    const clock = { at: Date.UTC(2025, 0, 1) };
    const taken: string[] = [];
    for (let run = 0; run < 5; run += 1) {
      clock.at += 6 * 3_600_000;
      const backup = await takeBackup(db, {
        dir,
        serverName: 'drill',
        keep: 3,
        now: () => new Date(clock.at),
      });
      taken.push(backup.file);
      assert.equal(backup.deleted.length, run < 3 ? 0 : 1);
    }
    await writeFile(join(dir, 'notes.txt'), 'not a backup');
    assert.deepEqual(await filesIn(dir), taken.slice(2));
    assert.ok((await readdir(dir)).includes('notes.txt'));
    assert.equal(await readBackupStatus(dir), clock.at / 1000);
  });

  it('removes temp files abandoned a day ago, and leaves a recent one (a run in progress)', async (t) => {
    const { db, dir } = await sqliteDrill(t);
    await importSample(db);
    await mkdir(dir, { recursive: true });
    const abandoned = '.users-20250101T000000.000Z.ndjson.gz.4242.deadbeef.tmp';
    const writing = '.users-20250102T000000.000Z.ndjson.gz.4343.cafebabe.tmp';
    await writeFile(join(dir, abandoned), 'partial');
    await writeFile(join(dir, writing), 'partial');
    const dayAgo = new Date(Date.now() - 25 * 3_600_000);
    await utimes(join(dir, abandoned), dayAgo, dayAgo);
    await takeBackup(db, { dir, serverName: 'drill', keep: 3 });
    const names = await readdir(dir);
    assert.ok(!names.includes(abandoned), names.join(', '));
    assert.ok(names.includes(writing), names.join(', '));
  });

  it('a failed run deletes nothing: the newest good backup survives', async (t) => {
    const { db, dir } = await sqliteDrill(t);
    await importSample(db);
    const good = await takeBackup(db, { dir, serverName: 'drill', keep: 1 });
    const broken: Database = {
      ...db,
      readSnapshot: () => Promise.reject(new Error('disk on fire')),
    };
    await assert.rejects(
      takeBackup(broken, {
        dir,
        serverName: 'drill',
        keep: 1,
        now: () => new Date(Date.now() + 60_000),
      }),
      /disk on fire/,
    );
    assert.deepEqual(await readdir(dir), [good.file, 'last-success.json'].sort());
  });

  it('a backup of a table holding a row the import rules refuse fails, naming the line', async (t) => {
    // A returned backup is a restorable one: better a loud failed run than a file restore refuses.
    const { db, dir } = await sqliteDrill(t);
    await importSample(db);
    await db.write
      .insertInto('users')
      .values({
        name: 'Odd',
        street: 'Odd Street',
        city: 'Odd',
        state: 'ZZ',
        user_date: '01/01/01',
      })
      .execute();
    await assert.rejects(
      takeBackup(db, { dir, serverName: 'drill' }),
      /failed its read-back check: .* 1 row breaks the rules every import checks; the first: line 1002: STATE: "ZZ"/,
    );
    assert.deepEqual(await readdir(dir), []);
  });

  it('the scheduler runs on its interval, logs one JSON-able line per run, and stops', async (t) => {
    const { db, dir } = await sqliteDrill(t);
    await importSample(db);
    const lines: { level: string; details: Record<string, unknown> }[] = [];
    let stop!: () => void;
    const stopped = new Promise<void>((resolve) => (stop = resolve));
    let at = Date.UTC(2025, 0, 1);
    let runs = 0;
    const result = await runBackupSchedule({
      everyMs: 10,
      stopped,
      logger: {
        info: (details) => lines.push({ level: 'info', details: details as never }),
        error: (details) => lines.push({ level: 'error', details: details as never }),
      },
      run: async () => {
        runs += 1;
        if (runs === 4) stop();
        if (runs === 2) throw new Error('replica gone');
        at += 1000;
        return takeBackup(db, { dir, serverName: 'drill', keep: 2, now: () => new Date(at) });
      },
    });
    assert.deepEqual(result, { runs: 4, failures: 1 });
    assert.deepEqual(
      lines.map((line) => [line.level, line.details.result]),
      [
        ['info', 'ok'],
        ['error', 'failed'],
        ['info', 'ok'],
        ['info', 'ok'],
      ],
    );
    assert.equal(lines[1]!.details.error, 'replica gone');
    assert.deepEqual(lines[3]!.details.deleted, [backupFileName(new Date(at - 2000))]);
    assert.equal((await readdir(dir)).filter((name) => name.startsWith('users-')).length, 2);
    assert.equal(await countUsers(db.write), 1000);
  });
});

describe('/admin/backups', () => {
  it('takes, lists and restores backups; admin only; metric set', async (t) => {
    const { app, db, config } = await createTestApp(t);
    await importSample(db);
    const taken = await app.inject({ method: 'POST', url: '/admin/backups' });
    assert.equal(taken.statusCode, 201, taken.body);
    const body = taken.json<{ file: string; rows: number; sha256: string; deleted: string[] }>();
    assert.equal(body.rows, 1000);
    assert.match(body.sha256, /^[0-9a-f]{64}$/);

    const listed = await app.inject({ method: 'GET', url: '/admin/backups' });
    assert.equal(listed.statusCode, 200);
    const { backups } = listed.json<{
      backups: { file: string; bytes: number; manifest: Record<string, unknown> }[];
    }>();
    assert.equal(backups.length, 1);
    assert.equal(backups[0]!.file, body.file);
    assert.equal(backups[0]!.manifest.rows, 1000);
    assert.equal(backups[0]!.manifest.sourceDialect, 'sqlite');
    assert.equal(backups[0]!.manifest.serverName, 'test-server');

    const metrics = await app.inject({ method: 'GET', url: '/metrics' });
    assert.match(metrics.body, /^users_backup_last_success_timestamp_seconds [1-9]\d*/m);

    await db.write.deleteFrom('users').execute();
    const restored = await app.inject({
      method: 'POST',
      url: `/admin/backups/${body.file}/restore`,
    });
    assert.equal(restored.statusCode, 200, restored.body);
    assert.equal(await countUsers(db.write), 1000);

    await writeFile(join(config.backupDir, 'users-20200101T000000.000Z.ndjson.gz'), 'junk');
    const bad = await app.inject({
      method: 'POST',
      url: '/admin/backups/users-20200101T000000.000Z.ndjson.gz/restore',
    });
    assert.equal(bad.statusCode, 422);
    assert.equal(bad.headers['content-type'], 'application/problem+json; charset=utf-8');
    assert.equal(bad.json<{ code: string }>().code, 'ERR_BACKUP_INVALID');
    assert.match(bad.json<{ detail: string }>().detail, /not gzip-compressed/);
    const traversal = await app.inject({
      method: 'POST',
      url: `/admin/backups/${encodeURIComponent('../users.db')}/restore`,
    });
    assert.equal(traversal.statusCode, 404);
    assert.equal(await countUsers(db.write), 1000);

    const listedAgain = await app.inject({ method: 'GET', url: '/admin/backups' });
    const entries = listedAgain.json<{ backups: { file: string; problem?: string }[] }>().backups;
    assert.equal(entries.length, 2);
    assert.match(entries[1]!.problem ?? '', /not gzip-compressed/);
  });

  it('needs the admin token when one is configured, and loopback otherwise', async (t) => {
    const { app } = await createTestApp(t, { ADMIN_TOKEN: 'a-very-long-admin-token' });
    for (const method of ['GET', 'POST'] as const) {
      const refused = await app.inject({ method, url: '/admin/backups' });
      assert.equal(refused.statusCode, 401);
      assert.equal(refused.json<{ code: string }>().code, 'ERR_AUTH_REQUIRED');
    }
    const allowed = await app.inject({
      method: 'GET',
      url: '/admin/backups',
      headers: { authorization: 'Bearer a-very-long-admin-token' },
    });
    assert.equal(allowed.statusCode, 200);
    assert.deepEqual(allowed.json(), { backups: [] });

    const open = await createTestApp(t);
    const remote = await open.app.inject({
      method: 'POST',
      url: '/admin/backups',
      remoteAddress: '203.0.113.9',
    });
    assert.equal(remote.statusCode, 403);
  });
});

describe('/admin/backups trusts only regular, valid backup files in BACKUP_DIR', () => {
  interface Listing {
    file: string;
    bytes?: number;
    manifest?: Record<string, unknown>;
    problem?: string;
  }
  const list = async (app: FastifyInstance) => {
    const response = await app.inject({ method: 'GET', url: '/admin/backups' });
    assert.equal(response.statusCode, 200, response.body);
    return response.json<{ backups: Listing[] }>().backups;
  };
  const restore = (app: FastifyInstance, file: string) =>
    app.inject({ method: 'POST', url: `/admin/backups/${file}/restore` });

  it('a backup whose manifest lacks fields is listed with its problem; the rest is served', async (t) => {
    const { app, db, config } = await createTestApp(t);
    await importSample(db);
    const good = await takeBackup(db, { dir: config.backupDir, serverName: 'drill' });
    const lines = gunzipSync(await readFile(good.path))
      .toString()
      .split('\n');
    const manifest = JSON.parse(lines[0]!) as Record<string, unknown>;
    delete manifest.serverName;
    delete manifest.source;
    delete manifest.schemaVersion;
    lines[0] = JSON.stringify(manifest);
    const bare = 'users-20200101T000000.000Z.ndjson.gz';
    await writeFile(join(config.backupDir, bare), gzipSync(lines.join('\n')));

    const backups = await list(app);
    assert.deepEqual(
      backups.map((entry) => entry.file),
      [good.file, bare],
    );
    assert.equal(backups[0]!.manifest?.serverName, 'drill');
    assert.equal(
      backups[1]!.problem,
      `${join(config.backupDir, bare)} is not a valid users-api backup: the manifest lacks a valid schemaVersion, source, serverName`,
    );
    const refused = await restore(app, bare);
    assert.equal(refused.statusCode, 422, refused.body);
  });

  it('a symlink in BACKUP_DIR to a valid backup outside it is not restored, and says why', async (t) => {
    const outside = await mkdtemp(join(tmpdir(), 'users-api-outside-'));
    t.after(() => rm(outside, { recursive: true, force: true }));
    // BACKUP_DIR itself may be a link: only what is inside it must be a regular file.
    const linkedDir = join(outside, 'backups-link');
    const { app, db, dir } = await createTestApp(t, { BACKUP_DIR: linkedDir });
    await mkdir(join(dir, 'real-backups'));
    await symlink(join(dir, 'real-backups'), linkedDir);
    await importSample(db);
    const foreign = await takeBackup(db, { dir: outside, serverName: 'elsewhere' });
    await db.write.deleteFrom('users').where('id', '>', 10).execute();
    const own = await takeBackup(db, { dir: linkedDir, serverName: 'drill' });
    const live = await primaryUsers(db);
    const link = 'users-20200101T000000.000Z.ndjson.gz';
    await symlink(foreign.path, join(linkedDir, link));

    const backups = await list(app);
    assert.deepEqual(
      backups.map((entry) => entry.file),
      [own.file, link],
    );
    assert.equal(backups[0]!.manifest?.rows, 10);
    assert.match(backups[1]!.problem ?? '', /symbolic link/);
    const refused = await restore(app, link);
    assert.equal(refused.statusCode, 422, refused.body);
    assert.match(refused.json<{ detail: string }>().detail, /symbolic link/);
    assert.deepEqual(await primaryUsers(db), live);
    const restored = await restore(app, own.file);
    assert.equal(restored.statusCode, 200, restored.body);
  });

  it('a FIFO named like a backup hangs neither listing nor restore; later restores still run', async (t) => {
    const { app, db, config } = await createTestApp(t);
    await importSample(db);
    await mkdir(config.backupDir, { recursive: true });
    const fifo = 'users-20200101T000000.000Z.ndjson.gz';
    const fifoPath = join(config.backupDir, fifo);
    makeFifo(fifoPath);
    // Released before the test's folder is removed: a reader stuck on it would keep the process.
    try {
      const backups = await within(10_000, 'GET /admin/backups', list(app));
      assert.deepEqual(backups, [
        {
          file: fifo,
          problem: `${fifoPath} is not a valid users-api backup: it is a FIFO, not a regular file`,
        },
      ]);
      const refused = await within(10_000, 'restoring the FIFO', restore(app, fifo));
      assert.equal(refused.statusCode, 422, refused.body);
      assert.match(refused.json<{ detail: string }>().detail, /it is a FIFO, not a regular file/);
    } finally {
      await releaseFifo(fifoPath);
    }

    const taken = await within(
      10_000,
      'a backup',
      app.inject({ method: 'POST', url: '/admin/backups' }),
    );
    assert.equal(taken.statusCode, 201, taken.body);
    const restored = await within(
      10_000,
      'a restore',
      restore(app, taken.json<{ file: string }>().file),
    );
    assert.equal(restored.statusCode, 200, restored.body);
  });

  it('a re-hashed backup whose rows break the import rules is refused, naming the lines', async (t) => {
    const { app, db, config } = await createTestApp(t);
    await importSample(db);
    const good = await takeBackup(db, { dir: config.backupDir, serverName: 'drill' });
    await db.write.deleteFrom('users').where('id', '>', 10).execute();
    const live = await primaryUsers(db);

    const tampered = 'users-20200101T000000.000Z.ndjson.gz';
    await rehashBackup(good.path, join(config.backupDir, tampered), (rows) => {
      setField(rows[0]!, 'NAME', 'N'.repeat(60_000));
      setField(rows[499]!, 'STATE', 'ZZ');
      setField(rows[999]!, 'USER_DATE', '99/99/99');
    });
    const refused = await restore(app, tampered);
    assert.equal(refused.statusCode, 422, refused.body);
    const problem = refused.json<{ code: string; detail: string; errors: string[] }>();
    assert.equal(problem.code, 'ERR_BACKUP_INVALID');
    assert.match(problem.detail, /line 2: NAME: longer than 255 characters/);
    assert.deepEqual(problem.errors, [
      'line 2: NAME: longer than 255 characters',
      'line 501: STATE: "ZZ" is not a US state, DC or territory code (e.g. NY)',
      'line 1001: USER_DATE: "99/99/99" has no month 99',
    ]);
    assert.deepEqual(await primaryUsers(db), live);

    // The same helper with an edit the rules allow: the file restores, so only the rows stopped it.
    const edited = 'users-20200102T000000.000Z.ndjson.gz';
    await rehashBackup(good.path, join(config.backupDir, edited), (rows) => {
      setField(rows[0]!, 'NAME', 'Duane Adamz');
    });
    const restored = await restore(app, edited);
    assert.equal(restored.statusCode, 200, restored.body);
    assert.equal((await primaryUsers(db))[0]!.name, 'Duane Adamz');
  });
});

describe('the service reads the scheduler status file for its metric', () => {
  it('users_backup_last_success_timestamp_seconds follows last-success.json', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'users-api-status-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const { createMetrics } = await import('../../src/metrics/create-metrics.js');
    const metrics = createMetrics({
      processMetrics: false,
      lastBackupSuccess: () => readBackupStatus(dir),
    });
    assert.match(await metrics.render(), /^users_backup_last_success_timestamp_seconds 0$/m);
    await writeFile(
      join(dir, 'last-success.json'),
      JSON.stringify({ at: '2025-01-01T06:00:00.000Z', file: 'x', rows: 1 }),
    );
    assert.match(
      await metrics.render(),
      /^users_backup_last_success_timestamp_seconds 1735711200$/m,
    );
  });

  it('a FIFO named like the status file does not hang the metrics scrape', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'users-api-status-'));
    const fifo = join(dir, 'last-success.json');
    makeFifo(fifo);
    // Released before the folder is removed: a reader stuck on it would keep the process.
    t.after(async () => {
      await releaseFifo(fifo);
      await rm(dir, { recursive: true, force: true });
    });
    const { createMetrics } = await import('../../src/metrics/create-metrics.js');
    const metrics = createMetrics({
      processMetrics: false,
      lastBackupSuccess: () => readBackupStatus(dir),
    });
    assert.match(
      await within(10_000, 'a metrics scrape', metrics.render()),
      /^users_backup_last_success_timestamp_seconds 0$/m,
    );
  });
});
