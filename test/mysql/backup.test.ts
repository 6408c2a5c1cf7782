import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { createConnection, type Connection, type RowDataPacket } from 'mysql2/promise';
import { createBackup } from '../../src/backup/create-backup.js';
import { restoreBackup } from '../../src/backup/restore-backup.js';
import type { Database } from '../../src/db/database.js';
import { listUsers } from '../../src/db/users-repository.js';
import {
  drillBackupDuringImport,
  drillBadFiles,
  drillReadsDuringRestore,
  drillTableDropped,
  drillWipedOut,
  generatedSource,
  importSample,
  primaryUsers,
  type DrillContext,
} from '../helpers/backup-drills.js';
import { eventually, mariadbPairSuite, startMysqlApp } from '../helpers/mariadb.js';
import { createTestDatabase } from '../helpers/test-database.js';
import { importUsers } from '../../src/importer/import-users.js';

const pairSuite = mariadbPairSuite();

async function backupFolder(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'users-api-backups-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** The app on the pair, with the replica healthy (so snapshots are read there). */
async function mysqlDrill(t: TestContext) {
  const pair = pairSuite.require();
  // The drills write behind the app's back (no HTTP), so the app must look at the data version
  // on every request; otherwise its cache may show the previous list for API_CACHE_CHECK_MS.
  const app = await startMysqlApp(t, pair, { API_CACHE_CHECK_MS: '0' });
  await eventually(() => app.db.replicaStates()[0]?.healthy === true, 'the replica is healthy');
  const ctx: DrillContext = { db: app.db, dir: await backupFolder(t) };
  return { ...app, ctx };
}

describe('restore drills on the MariaDB pair (real replication)', { timeout: 600_000 }, () => {
  pairSuite.register();

  it('1: data wiped out → restore → identical rows, order and checksum', async (t) => {
    const { ctx } = await mysqlDrill(t);
    await drillWipedOut(ctx);
    pairSuite.require().waitForReplication();
    assert.equal(
      pairSuite.require().replica.sql('SELECT COUNT(*) FROM users.users').trim(),
      '1000',
    );
  });

  it('2: users table dropped → restore recreates it (utf8mb4, on the replica too)', async (t) => {
    const { ctx } = await mysqlDrill(t);
    await drillTableDropped(ctx);
    pairSuite.require().waitForReplication();
    assert.match(
      pairSuite.require().replica.sql('SHOW CREATE TABLE users.users'),
      /CHARSET=utf8mb4 COLLATE=utf8mb4_bin/,
    );
  });

  it('3: truncated, flipped, foreign and newer files are refused; the table is untouched', async (t) => {
    const { ctx } = await mysqlDrill(t);
    await drillBadFiles(ctx);
  });

  it('4: /api during a restore answers the old or the new full list (RENAME TABLE swap)', async (t) => {
    const { ctx, url } = await mysqlDrill(t);
    await drillReadsDuringRestore(ctx, async () => {
      const response = await fetch(`${url}/api`);
      return { status: response.status, body: await response.text() };
    });
  });

  it('5: a backup during an import holds the rows before it or after it (snapshot on the replica)', async (t) => {
    const { ctx, db } = await mysqlDrill(t);
    const sources: string[] = [];
    const spy: Database = {
      ...db,
      readSnapshot: (read) =>
        db.readSnapshot((executor, source) => {
          sources.push(source);
          return read(executor, source);
        }),
    };
    await drillBackupDuringImport({ ...ctx, db: spy });
    assert.ok(sources.length >= 2);
    assert.ok(
      sources.every((source) => source === db.replicaStates()[0]!.name),
      `snapshots read from ${sources.join(', ')}, not the replica`,
    );
  });

  it('a table swap waits for a running backup: replica reads never queue behind it', async (t) => {
    const { ctx, db } = await mysqlDrill(t);
    await importSample(db);
    await db.waitForReplicas();
    const pair = pairSuite.require();
    const [primary, replica] = await Promise.all([
      createConnection(pair.primary.url),
      createConnection(pair.replica.url),
    ]);
    t.after(() => Promise.all([primary.end(), replica.end()]));
    const count = async (connection: Connection) => {
      const [rows] = await connection.query<RowDataPacket[]>('SELECT COUNT(*) AS n FROM users');
      return Number(rows[0]!.n);
    };

    let replace: Promise<unknown> | undefined;
    let readDuringBackup: number | undefined;
    const backup = await createBackup(db, {
      dir: ctx.dir,
      serverName: 'drill',
      pageRows: 200,
      onPage: async () => {
        if (replace !== undefined) return;
        replace = importUsers(db, generatedSource(3000), 'replace');
        // Until the replace is at its swap: renamed on the primary already, or waiting there.
        await eventually(async () => {
          const [waiting] = await primary.query<RowDataPacket[]>(
            "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT GET_LOCK(%users-api.swap%'",
          );
          return Number(waiting[0]!.n) > 0 || (await count(primary)) === 3000;
        }, 'the replace reaches its swap');
        // Had the RENAME gone through, the replica would apply it only after this snapshot ends,
        // and this read would queue behind it: with the backup paused here, for ever.
        const stalled = new Promise<never>((_, reject) => {
          setTimeout(reject, 8000, new Error('a replica read queued behind the swap')).unref();
        });
        readDuringBackup = await Promise.race([count(replica), stalled]);
      },
    });
    await replace;
    assert.equal(backup.rows, 1000);
    assert.equal(readDuringBackup, 1000, 'the swap waited for the backup');
    await db.waitForReplicas();
    assert.equal(await count(replica), 3000);
  });

  it('a backup reads the primary when no replica is healthy', async (t) => {
    const { ctx, db } = await mysqlDrill(t);
    await importSample(db);
    pairSuite.require().replica.sql('STOP SLAVE');
    await eventually(() => db.replicaStates()[0]?.healthy === false, 'the replica is out');
    const backup = await createBackup(db, { dir: ctx.dir, serverName: 'drill' });
    pairSuite.require().replica.sql('START SLAVE');
    assert.equal(backup.manifest.source, 'primary');
    assert.equal(backup.rows, 1000);
  });

  it('a SQLite backup restores into MariaDB and a MariaDB backup into SQLite', async (t) => {
    const { ctx, db } = await mysqlDrill(t);
    const sqlite = await createTestDatabase(t);
    await importUsers(sqlite.db, generatedSource(2500), 'replace');
    const fromSqlite = await createBackup(sqlite.db, { dir: ctx.dir, serverName: 'lite' });
    assert.equal(fromSqlite.manifest.sourceDialect, 'sqlite');

    await importSample(db);
    await restoreBackup(db, fromSqlite.path);
    assert.deepEqual(await primaryUsers(db), await primaryUsers(sqlite.db));
    assert.deepEqual(await db.read(listUsers), await primaryUsers(sqlite.db));

    // And back: the same rows from MariaDB hash the same as from SQLite.
    const fromMysql = await createBackup(db, {
      dir: ctx.dir,
      serverName: 'maria',
      now: () => new Date(Date.now() + 1000),
    });
    assert.equal(fromMysql.manifest.sourceDialect, 'mysql');
    assert.equal(fromMysql.sha256, fromSqlite.sha256);
    await importSample(db);
    const mysqlRows = await primaryUsers(db);
    const mysqlBackup = await createBackup(db, {
      dir: ctx.dir,
      serverName: 'maria',
      now: () => new Date(Date.now() + 2000),
    });
    await restoreBackup(sqlite.db, mysqlBackup.path);
    assert.deepEqual(await primaryUsers(sqlite.db), mysqlRows);
  });
});
