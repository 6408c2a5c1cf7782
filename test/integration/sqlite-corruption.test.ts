import assert from 'node:assert/strict';
import { open } from 'node:fs/promises';
import { describe, it } from 'node:test';
import SqliteDatabase from 'better-sqlite3';
import { generateUsers } from '../../scripts/generate-users-lib.js';
import { buildApp } from '../../src/app.js';
import { openDatabase } from '../../src/db/open-database.js';
import { importUsers } from '../../src/importer/import-users.js';
import { eventually } from '../helpers/mariadb.js';
import { testAppDependencies } from '../helpers/test-app.js';
import { createTestDatabase } from '../helpers/test-database.js';

const USERS = 5000;

/** The file offset and size of the third leaf page of the users table, in key order. */
function thirdUsersLeaf(path: string): { offset: number; size: number } {
  const connection = new SqliteDatabase(path, { readonly: true });
  try {
    const size = connection.pragma('page_size', { simple: true }) as number;
    // dbstat lists a b-tree's pages in tree order: the third leaf holds rows past the first page
    // the readiness probe reads, and within the first 2,000 rows /api reads before answering.
    const leaves = connection
      .prepare<[], { pageno: number }>(
        "SELECT pageno FROM dbstat WHERE name = 'users' AND pagetype = 'leaf'",
      )
      .all();
    assert.ok(leaves.length > 10, `the users table spans only ${leaves.length} leaf pages`);
    return { offset: (leaves[2]!.pageno - 1) * size, size };
  } finally {
    connection.close();
  }
}

describe('a corrupt SQLite data page', () => {
  it('latches /healthcheck at 503 until an integrity check passes again', async (t) => {
    const { db: setup, config } = await createTestDatabase(t);
    const csv = [...generateUsers(USERS)].join('');
    await importUsers(
      setup,
      {
        format: 'csv',
        // eslint-disable-next-line @typescript-eslint/require-await -- an async source of one chunk
        async *open() {
          yield Buffer.from(csv);
        },
      },
      'append',
    );
    await setup.close(); // checkpoints the WAL: every page is in the main file
    assert.equal(config.database.dialect, 'sqlite');
    const path = config.database.path;

    // Overwrite a table b-tree leaf past its 8-byte header: cell pointers and cells become junk.
    const { offset, size } = thirdUsersLeaf(path);
    const file = await open(path, 'r+');
    t.after(() => file.close());
    const original = Buffer.alloc(size);
    await file.read(original, 0, size, offset);
    await file.write(Buffer.alloc(size - 8, 'A'), 0, size - 8, offset + 8);

    const logged: { level: string; message: string }[] = [];
    const record = (level: string) => (_details: object, message: string) =>
      logged.push({ level, message });
    const db = openDatabase(config.database, {
      create: false,
      logger: { error: record('error'), warn: record('warn'), info: record('info') },
      corruptionRecheckMs: 200,
    });
    const app = buildApp(testAppDependencies(config, db));
    t.after(async () => {
      await app.close();
      await db.close();
    });
    const url = await app.listen({ port: 0, host: '127.0.0.1' });

    // The cheap probe reads the first page only: before any corrupt read, all looks well.
    assert.equal((await fetch(`${url}/healthcheck`)).status, 200);
    assert.equal((await fetch(`${url}/api`)).status, 503);
    // Asked at once, inside the window the fast path answers a fresh pass from memory.
    const latched = await fetch(`${url}/healthcheck`);
    assert.equal(latched.status, 503);
    assert.match(await latched.text(), /^database corrupt: /);
    const health = (await (await fetch(`${url}/healthcheck?format=json`)).json()) as {
      status: string;
      checks: Record<string, { status: string; output?: string }[]>;
    };
    assert.equal(health.status, 'fail');
    assert.match(health.checks['database:responseTime']![0]!.output ?? '', /^database corrupt: /);
    assert.ok(
      logged.some((line) => line.level === 'error' && /database corrupt/.test(line.message)),
      JSON.stringify(logged),
    );
    // The background check keeps failing while the page is bad.
    await new Promise((resolve) => setTimeout(resolve, 600));
    assert.equal((await fetch(`${url}/healthcheck`)).status, 503);

    await file.write(original, 0, size, offset);
    await eventually(
      async () => (await fetch(`${url}/healthcheck`)).status === 200,
      '/healthcheck answers 200 once the integrity check passes',
      15_000,
    );
    const users = await fetch(`${url}/api`);
    assert.equal(users.status, 200);
    assert.equal(((await users.json()) as unknown[]).length, USERS);
    assert.ok(logged.some((line) => line.level === 'info' && /integrity/.test(line.message)));
  });
});
