import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { countUsers, listUsers } from '../../src/db/users-repository.js';
import { AppError } from '../../src/errors.js';
import { fileImportSource, type ImportFormat } from '../../src/importer/import-source.js';
import { importUsers } from '../../src/importer/import-users.js';
import { generateUsers } from '../../scripts/generate-users-lib.js';
import { fixture, REPO_ROOT } from '../helpers/paths.js';
import { createTestDatabase } from '../helpers/test-database.js';

const SAMPLE = join(REPO_ROOT, 'data/users.csv');
const source = (path: string, format: ImportFormat = 'csv') => fileImportSource(path, format);

async function rejection(promise: Promise<unknown>): Promise<AppError> {
  const error = await promise.then(
    () => assert.fail('expected the import to fail'),
    (thrown: unknown) => thrown,
  );
  assert.ok(error instanceof AppError, String(error));
  return error;
}

describe('importUsers on SQLite', () => {
  it('imports the sample in file order, first rows exactly as the seed', async (t) => {
    const { db } = await createTestDatabase(t);
    assert.deepEqual(await importUsers(db, source(SAMPLE), 'if-empty'), {
      status: 'imported',
      rows: 1000,
    });
    const users = await db.read(listUsers);
    assert.equal(users.length, 1000);
    assert.deepEqual(users.slice(0, 3), [
      {
        name: 'Duane Adams',
        street: 'Hojzi Path',
        city: 'Zurmubku',
        state: 'NY',
        userDate: '08/08/43',
      },
      {
        name: 'Ruby Hampton',
        street: 'Seime Plaza',
        city: 'Ikduju',
        state: 'KS',
        userDate: '16/09/86',
      },
      {
        name: 'Carl Johnson',
        street: 'Zopwe Drive',
        city: 'Ehazeru',
        state: 'RI',
        userDate: '27/11/64',
      },
    ]);
  });

  it('skips a non-empty table in if-empty mode without reading the file', async (t) => {
    const { db } = await createTestDatabase(t);
    await importUsers(db, source(fixture('csv/crlf.csv')), 'if-empty');
    assert.deepEqual(await importUsers(db, source('/nonexistent.csv'), 'if-empty'), {
      status: 'skipped',
      reason: 'table not empty',
      rows: 2,
    });
  });

  it('appends and replaces', async (t) => {
    const { db } = await createTestDatabase(t);
    await importUsers(db, source(fixture('csv/crlf.csv')), 'if-empty');
    assert.deepEqual(await importUsers(db, source(fixture('csv/quoted-comma.csv')), 'append'), {
      status: 'imported',
      rows: 1,
    });
    assert.deepEqual(
      (await db.read(listUsers)).map((u) => u.name),
      ['Duane Adams', 'Ruby Hampton', 'Adams, Duane'],
    );
    assert.deepEqual(await importUsers(db, source(fixture('json/users.json'), 'json'), 'replace'), {
      status: 'imported',
      rows: 2,
    });
    assert.deepEqual(
      (await db.read(listUsers)).map((u) => u.name),
      ['Duane Adams', 'Zoë Ødegård'],
    );
  });

  it('imports a JSON array of many users, batch after batch', { timeout: 60_000 }, async (t) => {
    // Enough rows for the parser to run ahead of several batches waiting to be inserted.
    const { db, dir } = await createTestDatabase(t);
    const path = join(dir, 'many.json');
    await writeFile(path, [...generateUsers(20_000, 'json')].join(''));
    assert.deepEqual(await importUsers(db, source(path, 'json'), 'if-empty'), {
      status: 'imported',
      rows: 20_000,
    });
    assert.equal(await db.read(countUsers), 20_000);
  });

  it('imports nothing when one row is bad, and names every bad row by line', async (t) => {
    const { db } = await createTestDatabase(t);
    await importUsers(db, source(fixture('csv/crlf.csv')), 'if-empty');
    const error = await rejection(
      importUsers(db, source(fixture('csv/several-bad-rows.csv')), 'replace'),
    );
    assert.equal(error.code, 'ERR_IMPORT_BAD_ROWS');
    assert.equal(error.status, 422);
    assert.equal(error.message, '2 bad rows; nothing was imported');
    assert.deepEqual(error.errors, [
      'line 2: expected 5 fields (NAME,STREET,CITY,STATE,USER_DATE), found 4',
      'line 3: STREET: must not be empty',
      'line 3: STATE: "XX" is not a US state, DC or territory code (e.g. NY)',
      'line 3: USER_DATE: "1/1/86" is not a date in dd/mm/yy form',
    ]);
    // replace was rolled back: the previous rows are still there
    assert.equal(await db.read(countUsers), 2);
  });

  it('rolls back rows already inserted in earlier batches when a late row is bad', async (t) => {
    const { db, dir } = await createTestDatabase(t);
    const path = join(dir, 'late-bad-row.csv');
    await writeFile(path, [...generateUsers(2500)].join('') + 'Late Row,Street,City,NY,31/02/99\n');
    const error = await rejection(importUsers(db, source(path), 'if-empty'));
    assert.deepEqual(error.errors, ['line 2502: USER_DATE: "31/02/99" is not a calendar date']);
    assert.equal(await db.read(countUsers), 0);
  });

  it('stops the report at 100 bad rows', async (t) => {
    const { db, dir } = await createTestDatabase(t);
    const path = join(dir, 'many-bad.csv');
    await writeFile(path, 'NAME,STREET,CITY,STATE,USER_DATE\n' + 'A,B,C,ZZ,01/01/01\n'.repeat(500));
    const error = await rejection(importUsers(db, source(path), 'if-empty'));
    assert.equal(error.message, '100 bad rows (stopped reading there); nothing was imported');
    assert.equal(error.errors?.length, 100);
    assert.equal(
      error.errors?.at(-1),
      'line 101: STATE: "ZZ" is not a US state, DC or territory code (e.g. NY)',
    );
  });

  for (const [name, code] of [
    ['csv/empty.csv', 'ERR_IMPORT_BAD_FILE'],
    ['csv/header-only.csv', 'ERR_IMPORT_NO_ROWS'],
    ['csv/latin1.csv', 'ERR_IMPORT_BAD_FILE'],
    ['csv/binary.csv', 'ERR_IMPORT_BAD_FILE'],
    ['csv/bad-date.csv', 'ERR_IMPORT_BAD_ROWS'],
    ['csv/bad-state.csv', 'ERR_IMPORT_BAD_ROWS'],
  ] as const) {
    it(`refuses ${name} with ${code} and leaves the table as it was`, async (t) => {
      const { db } = await createTestDatabase(t);
      await importUsers(db, source(fixture('csv/crlf.csv')), 'if-empty');
      const error = await rejection(importUsers(db, source(fixture(name)), 'replace'));
      assert.equal(error.code, code);
      assert.deepEqual(
        (await db.read(listUsers)).map((u) => u.name),
        ['Duane Adams', 'Ruby Hampton'],
      );
    });
  }

  it('reports a missing file', async (t) => {
    const { db } = await createTestDatabase(t);
    const error = await rejection(importUsers(db, source('/nonexistent/users.csv'), 'append'));
    assert.equal(error.code, 'ERR_IMPORT_FILE_NOT_FOUND');
    assert.equal(error.message, 'file not found: /nonexistent/users.csv');
  });

  it('imports NDJSON and reports bad NDJSON lines as items', async (t) => {
    const { db } = await createTestDatabase(t);
    assert.deepEqual(
      await importUsers(db, source(fixture('json/users.ndjson'), 'ndjson'), 'if-empty'),
      { status: 'imported', rows: 2 },
    );
    const error = await rejection(
      importUsers(db, source(fixture('json/bad-lines.ndjson'), 'ndjson'), 'append'),
    );
    assert.equal(error.errors?.length, 2);
    assert.match(error.errors[0]!, /^item 2: invalid JSON: /);
    assert.equal(error.errors[1], 'item 3: USER_DATE: "29/02/01" is not a calendar date');
    assert.equal(await db.read(countUsers), 2);
  });
});
