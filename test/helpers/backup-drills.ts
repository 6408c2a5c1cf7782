import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { copyFile, open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync, gunzipSync } from 'node:zlib';
import { sql } from 'kysely';
import { createBackup } from '../../src/backup/create-backup.js';
import { restoreBackup } from '../../src/backup/restore-backup.js';
import { readBackup } from '../../src/backup/read-backup.js';
import type { Database } from '../../src/db/database.js';
import { countUsers, listUsers } from '../../src/db/users-repository.js';
import { AppError } from '../../src/errors.js';
import type { ImportSource } from '../../src/importer/import-source.js';
import { importUsers } from '../../src/importer/import-users.js';
import { USER_FIELDS, type UserField } from '../../src/users/user.js';
import { generateUsers } from '../../scripts/generate-users-lib.js';
import { REPO_ROOT } from './paths.js';

/**
 * The restore drills of issue 5, written once and run on every dialect (SQLite always, the
 * real MariaDB pair in test/mysql). Each takes a migrated, empty database and a temp folder.
 */
export interface DrillContext {
  db: Database;
  dir: string;
}

const SAMPLE = join(REPO_ROOT, 'data/users.csv');

/** An import source of `rows` generated users (CSV), optionally pausing after the first chunk. */
export function generatedSource(rows: number, afterFirstChunk?: () => Promise<void>): ImportSource {
  return {
    format: 'csv',
    async *open() {
      let first = true;
      for (const chunk of generateUsers(rows)) {
        yield Buffer.from(chunk);
        if (first) await afterFirstChunk?.();
        first = false;
      }
    },
  };
}

export async function importSample(db: Database): Promise<void> {
  const { fileImportSource } = await import('../../src/importer/import-source.js');
  await importUsers(db, fileImportSource(SAMPLE, 'csv'), 'replace');
}

/** What the primary holds, read there (replicas may lag a moment behind a test's writes). */
export function primaryUsers(db: Database) {
  return listUsers(db.write);
}

async function backupNow(ctx: DrillContext) {
  return createBackup(ctx.db, { dir: ctx.dir, serverName: 'drill' });
}

/** Drill 1: data wiped out (DELETE FROM users) → restore → same rows, same order, same hash. */
export async function drillWipedOut(ctx: DrillContext): Promise<void> {
  await importSample(ctx.db);
  const before = await primaryUsers(ctx.db);
  const backup = await backupNow(ctx);
  assert.equal(backup.rows, 1000);
  await sql`DELETE FROM users`.execute(ctx.db.write);
  assert.equal(await countUsers(ctx.db.write), 0);

  const restored = await restoreBackup(ctx.db, backup.path);
  assert.equal(restored.rows, 1000);
  const after = await primaryUsers(ctx.db);
  assert.deepEqual(after, before);
  // Byte for byte, a few rows: the first (the seed's), one in the middle, the last.
  for (const index of [0, 1, 2, 499, 999]) {
    assert.equal(JSON.stringify(after[index]), JSON.stringify(before[index]));
  }
  // Readers (a replica on MySQL) see it too, once the restore returned.
  assert.deepEqual(await ctx.db.read(listUsers), before);
  // A new backup of the restored table hashes the same.
  const again = await createBackup(ctx.db, {
    dir: ctx.dir,
    serverName: 'drill',
    now: () => new Date(Date.now() + 1000),
  });
  assert.equal(again.sha256, backup.sha256);
}

/** Drill 2: the table dropped ("database deleted") → restore recreates it. */
export async function drillTableDropped(ctx: DrillContext): Promise<void> {
  await importSample(ctx.db);
  const before = await primaryUsers(ctx.db);
  const backup = await backupNow(ctx);
  await ctx.db.write.schema.dropTable('users').execute();
  await restoreBackup(ctx.db, backup.path);
  assert.deepEqual(await primaryUsers(ctx.db), before);
  assert.deepEqual(await ctx.db.read(listUsers), before);
  // The restored table takes imports like the migrated one did (ids keep counting).
  await importUsers(ctx.db, generatedSource(5), 'append');
  assert.equal(await countUsers(ctx.db.write), 1005);
}

/** Flips one byte of a copy of `path` at `offset` (from the end when negative). */
async function flipByte(path: string, to: string, offset: number): Promise<void> {
  const bytes = await readFile(path);
  const at = offset < 0 ? bytes.length + offset : offset;
  bytes[at] = bytes[at]! ^ 0xff;
  await writeFile(to, bytes);
}

/**
 * Writes a copy of the backup at `path` to `to` with its rows edited by `edit` (arrays of the
 * five fields, in file order), then recomputes the row counts and the SHA-256: the copy passes
 * every integrity check, so only the checks on the rows themselves can stop it.
 */
export async function rehashBackup(
  path: string,
  to: string,
  edit: (rows: string[][]) => void,
): Promise<void> {
  const lines = gunzipSync(await readFile(path))
    .toString('utf8')
    .split('\n');
  assert.equal(lines.pop(), '', 'a backup ends with a line feed');
  lines.pop(); // the end marker, written anew below
  const manifest = JSON.parse(lines.shift()!) as { rowCount: number };
  const rows = lines.map((line) => JSON.parse(line) as string[]);
  edit(rows);
  const text = rows.map((row) => `${JSON.stringify(row)}\n`).join('');
  const sha256 = createHash('sha256').update(text).digest('hex');
  manifest.rowCount = rows.length;
  const end = { end: 'users-api-backup', rowCount: rows.length, sha256 };
  await writeFile(to, gzipSync(`${JSON.stringify(manifest)}\n${text}${JSON.stringify(end)}\n`));
}

/** Sets one field of a backup row by its name (NAME, STREET, CITY, STATE, USER_DATE). */
export function setField(row: string[], field: UserField, value: string): void {
  row[USER_FIELDS.indexOf(field)] = value;
}

/** A named pipe at `path`: opening it for reading waits for a writer, for ever if none comes. */
export function makeFifo(path: string): void {
  execFileSync('mkfifo', [path]);
}

/**
 * Opens and closes the writing end of the FIFO at `path`, so a reader stuck opening it (the
 * code under test, when it waits for a writer) wakes up and the test process can end.
 */
export async function releaseFifo(path: string): Promise<void> {
  try {
    const writer = await open(path, constants.O_WRONLY | constants.O_NONBLOCK);
    await writer.close();
  } catch (error) {
    // ENXIO: nobody has it open for reading, so nobody is stuck; ENOENT: already removed.
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== 'ENXIO' && code !== 'ENOENT') throw error;
  }
}

/** `promise`, or a rejection naming `what` once `ms` have passed: a hang fails the test. */
export async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Drill 3: truncated, flipped byte, other formats, newer version → refused, table untouched. */
export async function drillBadFiles(ctx: DrillContext): Promise<void> {
  await importUsers(ctx.db, generatedSource(3000), 'replace');
  const good = await backupNow(ctx);
  await importSample(ctx.db);
  const live = await primaryUsers(ctx.db);

  const bytes = await readFile(good.path);
  const bad: { name: string; make: (to: string) => Promise<void>; message: RegExp }[] = [
    {
      name: 'truncated to half',
      make: (to) => writeFile(to, bytes.subarray(0, Math.floor(bytes.length / 2))),
      message: /truncated/,
    },
    {
      name: 'truncated by 4 bytes',
      make: (to) => writeFile(to, bytes.subarray(0, bytes.length - 4)),
      message: /truncated/,
    },
    {
      name: 'one byte flipped in the middle',
      make: (to) => flipByte(good.path, to, Math.floor(bytes.length / 2)),
      message: /corrupted/,
    },
    {
      name: 'one byte flipped near the start',
      make: (to) => flipByte(good.path, to, 40),
      message: /corrupted/,
    },
    {
      name: "one byte flipped in gzip's CRC",
      make: (to) => flipByte(good.path, to, -6),
      message: /corrupted/,
    },
    { name: 'a CSV file', make: (to) => copyFile(SAMPLE, to), message: /not gzip-compressed/ },
    {
      name: 'a gzipped CSV file',
      make: async (to) => writeFile(to, gzipSync(await readFile(SAMPLE))),
      message: /first line is not a users-api backup manifest/,
    },
    { name: 'an empty file', make: (to) => writeFile(to, ''), message: /empty/ },
    {
      name: 'rows edited with a checksum left as it was',
      make: async (to) => {
        const text = gunzipSync(bytes).toString().replace('Duane Adams', 'Duane Adamz');
        await writeFile(to, gzipSync(text));
      },
      message: /SHA-256/,
    },
    {
      name: 'a 60,000-character NAME, re-hashed',
      make: (to) =>
        rehashBackup(good.path, to, (rows) => setField(rows[0]!, 'NAME', 'N'.repeat(60_000))),
      message: /line 2: NAME: longer than 255 characters/,
    },
    {
      name: 'STATE "ZZ" and USER_DATE "99/99/99", re-hashed',
      make: (to) =>
        rehashBackup(good.path, to, (rows) => {
          setField(rows[1499]!, 'STATE', 'ZZ');
          setField(rows[2999]!, 'USER_DATE', '99/99/99');
        }),
      message: /line 1501: STATE: "ZZ" is not a US state/,
    },
    {
      name: 'a row missing (counts disagree)',
      make: async (to) => {
        const lines = gunzipSync(bytes).toString().split('\n');
        lines.splice(5, 1);
        await writeFile(to, gzipSync(lines.join('\n')));
      },
      message: /holds 2999 rows/,
    },
  ];
  for (const [index, { name, make, message }] of bad.entries()) {
    const path = join(ctx.dir, `bad-${index}.ndjson.gz`);
    await make(path);
    for (const attempt of [() => readBackup(path), () => restoreBackup(ctx.db, path)]) {
      await assert.rejects(
        attempt,
        (error: unknown) =>
          error instanceof AppError &&
          error.code === 'ERR_BACKUP_INVALID' &&
          error.status === 422 &&
          message.test(error.message) &&
          error.message.startsWith(`${path} is not a valid users-api backup: `),
        name,
      );
    }
    assert.deepEqual(await primaryUsers(ctx.db), live, `${name}: the live table changed`);
  }

  const newer = join(ctx.dir, 'newer.ndjson.gz');
  const text = gunzipSync(bytes).toString().replace('"formatVersion":1', '"formatVersion":2');
  await writeFile(newer, gzipSync(text));
  for (const attempt of [() => readBackup(newer), () => restoreBackup(ctx.db, newer)]) {
    await assert.rejects(attempt, {
      code: 'ERR_BACKUP_UNSUPPORTED_VERSION',
      message: `${newer} is a backup in format version 2, newer than this users-api reads (1): restore it with a newer users-api`,
    });
  }
  await assert.rejects(() => restoreBackup(ctx.db, join(ctx.dir, 'nope.ndjson.gz')), {
    code: 'ERR_BACKUP_NOT_FOUND',
  });
  assert.deepEqual(await primaryUsers(ctx.db), live);
  // No staging table left behind by the refused restores on the way.
  const tables = (await ctx.db.write.introspection.getTables()).map((table) => table.name);
  assert.ok(!tables.includes('users_staging'), `leftover staging table: ${tables.join(', ')}`);
}

export interface ApiAnswer {
  status: number;
  body: string;
}

/**
 * Drill 4: `/api` traffic during a restore sees the old or the new full list, never an empty
 * or partial one, and no request fails. Bounded: at most `maxRequests` requests.
 */
export async function drillReadsDuringRestore(
  ctx: DrillContext,
  getApi: () => Promise<ApiAnswer>,
  maxRequests = 400,
): Promise<void> {
  await importUsers(ctx.db, generatedSource(4000), 'replace');
  await ctx.db.waitForReplicas();
  const newBody = (await getApi()).body;
  const backup = await backupNow(ctx);
  await importSample(ctx.db);
  const oldBody = (await getApi()).body;
  assert.notEqual(oldBody, newBody);

  let restoring = true;
  const seen = { old: 0, new: 0, duringRestore: 0 };
  const problems: string[] = [];
  let requests = 0;
  const reader = async () => {
    while (restoring && requests < maxRequests) {
      requests += 1;
      const answer = await getApi();
      if (restoring) seen.duringRestore += 1;
      if (answer.status !== 200) problems.push(`status ${answer.status}`);
      else if (answer.body === oldBody) seen.old += 1;
      else if (answer.body === newBody) seen.new += 1;
      else problems.push(`a list of ${(JSON.parse(answer.body) as unknown[]).length} users`);
    }
  };
  const readers = [reader(), reader()];
  await restoreBackup(ctx.db, backup.path);
  restoring = false;
  await Promise.all(readers);
  assert.deepEqual(problems, [], 'responses that were neither the old nor the new list');
  assert.ok(seen.duringRestore > 0, 'no request ran during the restore');
  assert.equal((await getApi()).body, newBody, 'after the restore, /api serves the new list');
}

/**
 * Drill 5: a backup taken while an import is running is consistent: its row count is the
 * count before the import (the import had not committed) — and one whose snapshot is open
 * while another import commits holds the count from its start, not a torn mix.
 */
export async function drillBackupDuringImport(ctx: DrillContext): Promise<void> {
  await importSample(ctx.db);

  // (a) An import in progress (its transaction open, rows inserted, not committed).
  let backupDuringImport: Awaited<ReturnType<typeof backupNow>> | undefined;
  await importUsers(
    ctx.db,
    generatedSource(3000, async () => {
      backupDuringImport = await backupNow(ctx);
    }),
    'append',
  );
  assert.ok(backupDuringImport);
  assert.ok([1000, 4000].includes(backupDuringImport.rows), `${backupDuringImport.rows} rows`);
  assert.equal(backupDuringImport.rows, 1000, 'the uncommitted import is not in the backup');

  // (b) An import that commits after the backup's first page: the backup holds none of it.
  await ctx.db.waitForReplicas();
  let imported = false;
  const torn = await createBackup(ctx.db, {
    dir: ctx.dir,
    serverName: 'drill',
    now: () => new Date(Date.now() + 1000),
    pageRows: 500,
    onPage: async () => {
      if (imported) return;
      imported = true;
      await importUsers(ctx.db, generatedSource(2000), 'append');
    },
  });
  assert.ok(imported);
  assert.equal(await countUsers(ctx.db.write), 6000);
  assert.ok([4000, 6000].includes(torn.rows), `${torn.rows} rows`);
  assert.equal(torn.rows, 4000, 'the backup holds the rows of its snapshot only');
  const check = await readBackup(torn.path);
  assert.equal(check.sha256, torn.sha256);
}
