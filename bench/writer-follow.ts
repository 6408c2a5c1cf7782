/**
 * How long writes take to follow a promotion: a real MariaDB pair, the service's database layer
 * (default settings unless REPLICA_PROBE_INTERVAL_MS is set), the replica promoted by hand
 * (the primary made read-only, then the replica detached and made writable), then one write
 * tried every 50 ms until one is accepted. Then the roles are swapped back the same way, and
 * so on: ROUNDS switches in all. Prints each figure and the median and worst.
 *
 * Usage: tsx bench/writer-follow.ts [ROUNDS]   (e.g. REPLICA_PROBE_INTERVAL_MS=200 tsx …)
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../src/config/config.js';
import { beginWriteTransaction } from '../src/db/begin-write-transaction.js';
import type { Database } from '../src/db/database.js';
import { migrateToLatest } from '../src/db/migrate-to-latest.js';
import { openDatabase } from '../src/db/open-database.js';
import { startMariadbPair, type MariadbServer } from '../scripts/mariadb-pair.js';

const rounds = Number(process.argv[2] ?? '6');
const RETRY_MS = 50;
const MAX_ATTEMPTS = 400; // 20 s: bounded, never hangs

/** One write through the service's write path: the write lock, a transaction on the writer. */
async function write(db: Database): Promise<void> {
  await db.withWriteLock(async (locked) => {
    const trx = await beginWriteTransaction(db, locked);
    await trx.commit().execute();
  });
}

/** Ms from `switchRoles` to the first accepted write, which must land on `to`. */
async function measure(db: Database, from: MariadbServer, to: MariadbServer): Promise<number> {
  const versionOn = (server: MariadbServer) =>
    Number(server.sql('SELECT data_version FROM users.data_state WHERE id = 1').trim());
  const before = versionOn(to);
  from.sql('SET GLOBAL read_only=1');
  to.sql('SET GLOBAL read_only=0');
  const started = performance.now();
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt += 1) {
    try {
      await write(db);
      const elapsed = performance.now() - started;
      if (versionOn(to) !== before + 1) throw new Error('the write did not land on the new writer');
      return elapsed;
    } catch (error) {
      if ((error as { code?: unknown }).code === undefined) throw error;
      await sleep(RETRY_MS);
    }
  }
  throw new Error(`no write accepted within ${MAX_ATTEMPTS} attempts`);
}

const pair = await startMariadbPair();
try {
  const config = loadConfig({
    DATABASE_URL: pair.primary.url,
    DATABASE_REPLICA_URLS: pair.replica.url,
    LOG_LEVEL: 'silent',
    ...(process.env.REPLICA_PROBE_INTERVAL_MS !== undefined && {
      REPLICA_PROBE_INTERVAL_MS: process.env.REPLICA_PROBE_INTERVAL_MS,
    }),
  });
  const db = openDatabase(config.database, { create: true });
  try {
    await migrateToLatest(db);
    pair.waitForReplication();
    // The promotion: the replica stops replicating and keeps what it has.
    pair.replica.sql('STOP SLAVE; RESET SLAVE ALL');
    const figures: number[] = [];
    for (let round = 0; round < rounds; round += 1) {
      const [from, to] =
        round % 2 === 0 ? [pair.primary, pair.replica] : [pair.replica, pair.primary];
      const ms = await measure(db, from, to);
      figures.push(ms);
      console.log(`${from.name} -> ${to.name}: first write accepted after ${Math.round(ms)} ms`);
      await sleep(1500);
    }
    const sorted = [...figures].sort((a, b) => a - b);
    console.log(
      `probe interval ${config.database.dialect === 'mysql' ? config.database.replicaProbeIntervalMs : '-'} ms, ${rounds} switches: median ${Math.round(sorted[Math.floor(sorted.length / 2)]!)} ms, worst ${Math.round(sorted.at(-1)!)} ms`,
    );
  } finally {
    await db.close();
  }
} finally {
  await pair.stop();
}
