import assert from 'node:assert/strict';
import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { createConnection, type RowDataPacket } from 'mysql2/promise';
import type { MariadbPair } from '../../scripts/mariadb-pair.js';
import { generateUsers } from '../../scripts/generate-users-lib.js';
import { eventually, mariadbPairSuite, startMysqlApp } from '../helpers/mariadb.js';

// A row written on the replica alone (kept out of its binlog): seeing it proves a read came
// from the replica, not trusting the router's word for it.
const MARKER_ID = 2_000_000_000;
// Rows written behind the service's back (the marker, a direct INSERT) do not bump the data
// version, so the /api cache would rightly keep showing the last version it read. Tests that
// watch such rows to see where reads go run with the cache off: every /api reads the database.
const NO_API_CACHE = { API_CACHE_MAX_BYTES: '0', API_BODY_DIR: 'off' };
const MARKER_NAME = 'Replica Only';

const pairSuite = mariadbPairSuite();

function requirePair(): MariadbPair {
  return pairSuite.require();
}

function writeMarkerOnReplica(): void {
  requirePair().replica.sql(
    `SET sql_log_bin=0; INSERT INTO users.users (id, name, street, city, state, user_date) ` +
      `VALUES (${MARKER_ID}, '${MARKER_NAME}', 'Nowhere', 'Replica', 'NY', '01/01/01')`,
  );
}

function countOn(server: 'primary' | 'replica'): number {
  return Number(requirePair()[server].sql('SELECT COUNT(*) FROM users.users').trim());
}

async function getUsers(url: string): Promise<{ status: number; names: string[] }> {
  const response = await fetch(`${url}/api`);
  const body = (await response.json()) as { NAME: string }[];
  return {
    status: response.status,
    names: Array.isArray(body) ? body.map((user) => user.NAME) : [],
  };
}

async function post(url: string, path: string, init: RequestInit = {}) {
  const response = await fetch(`${url}${path}`, { method: 'POST', ...init });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

describe('MariaDB primary + replica (real replication)', { timeout: 600_000 }, () => {
  pairSuite.register();

  it('writes land on the primary, reach the replica, and /api reads from the replica', async (t) => {
    const { url, db } = await startMysqlApp(t, requirePair());
    await eventually(() => db.replicaStates()[0]?.healthy === true, 'the replica is healthy');
    assert.deepEqual(await post(url, '/addtosql'), {
      status: 200,
      body: { status: 'imported', rows: 1000 },
    });
    assert.equal(countOn('primary'), 1000);
    assert.equal(countOn('replica'), 1000);
    writeMarkerOnReplica();
    const { status, names } = await getUsers(url);
    assert.equal(status, 200);
    assert.equal(names.length, 1001);
    assert.equal(names.at(-1), MARKER_NAME);
    assert.equal(names[0], 'Duane Adams');
  });

  it('a replica killed under load costs no request; it returns to rotation after a restart', async (t) => {
    const current = requirePair();
    const { url, db } = await startMysqlApp(t, current, NO_API_CACHE);
    await post(url, '/addtosql');
    writeMarkerOnReplica();
    await eventually(() => db.replicaStates()[0]?.healthy === true, 'the replica is healthy');

    let done = 0;
    let failures = 0;
    let killed = false;
    const sawMarker = { before: 0, after: 0 };
    const deadline = Date.now() + 30_000;
    const worker = async () => {
      while (done < 600 && Date.now() < deadline) {
        try {
          const { status, names } = await getUsers(url);
          if (status !== 200 || names.length < 1000) failures += 1;
          if (names.at(-1) === MARKER_NAME) sawMarker[killed ? 'after' : 'before'] += 1;
        } catch {
          failures += 1;
        }
        done += 1;
        if (done === 150 && !killed) {
          killed = true;
          await current.replica.kill();
        }
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    assert.equal(failures, 0, 'failed requests while the replica died');
    assert.ok(done >= 600, `only ${done} requests ran`);
    assert.ok(sawMarker.before > 0, 'reads came from the replica before the kill');
    assert.equal(db.replicaStates()[0]?.healthy, false);
    const { names } = await getUsers(url);
    assert.notEqual(names.at(-1), MARKER_NAME, 'reads moved to the primary');

    await current.replica.start();
    await eventually(
      () => db.replicaStates()[0]?.healthy === true,
      'the restarted replica is back in rotation',
    );
    assert.equal((await getUsers(url)).names.at(-1), MARKER_NAME);
  });

  it('stopped replication or lag over the limit takes the replica out of rotation', async (t) => {
    const current = requirePair();
    const { url, db } = await startMysqlApp(t, current, {
      MAX_REPLICA_LAG_SECONDS: '1',
      ...NO_API_CACHE,
    });
    await post(url, '/addtosql');
    await eventually(() => db.replicaStates()[0]?.healthy === true, 'the replica is healthy');

    current.replica.sql('STOP SLAVE');
    await eventually(
      () => db.replicaStates()[0]?.healthy === false,
      'the stopped replica leaves rotation',
    );
    assert.match(db.replicaStates()[0]?.reason ?? '', /thread not running/);
    assert.equal((await getUsers(url)).status, 200);
    // The plain text stays "all good"; the JSON view and the metrics show the degraded state.
    assert.equal(await (await fetch(`${url}/healthcheck`)).text(), 'all good from mysql-test');
    const health = (await (
      await fetch(`${url}/healthcheck`, { headers: { accept: 'application/json' } })
    ).json()) as {
      status: string;
      checks: Record<string, { componentId?: string; status: string; output?: string }[]>;
    };
    assert.equal(health.status, 'warn');
    const [lag] = health.checks['database:replicationLag'] ?? [];
    assert.equal(lag?.componentId, `127.0.0.1:${current.replica.port}`);
    assert.equal(lag?.status, 'warn');
    assert.match(
      lag?.output ?? '',
      /^out of the read rotation: replication (SQL|I\/O) thread not running$/,
    );
    const metrics = await (await fetch(`${url}/metrics`)).text();
    assert.match(
      metrics,
      new RegExp(
        `^users_db_replica_healthy\\{replica="127.0.0.1:${current.replica.port}"\\} 0$`,
        'm',
      ),
    );
    assert.match(metrics, /^users_db_reads_routed_to_primary_total [1-9]\d*$/m);
    current.replica.sql('START SLAVE');
    await eventually(
      () => db.replicaStates()[0]?.healthy === true,
      'the restarted replication rejoins',
    );

    // Delayed apply: the replica receives writes but applies them 30 s late.
    current.replica.sql('STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=30; START SLAVE');
    current.primary.sql(
      "INSERT INTO users.users (name, street, city, state, user_date) VALUES ('Late', 'S', 'C', 'NY', '01/01/01')",
    );
    await eventually(
      () => db.replicaStates()[0]?.healthy === false,
      'the lagging replica leaves rotation',
    );
    assert.match(db.replicaStates()[0]?.reason ?? '', /^lag \d+s over 1s$/);
    const { names } = await getUsers(url);
    assert.equal(names.at(-1), 'Late', 'reads come from the primary meanwhile');
  });

  it('with the primary down, reads go on, writes answer 503, and a cut import leaves no rows', async (t) => {
    const current = requirePair();
    const dir = await mkdtemp(join(tmpdir(), 'users-api-mysql-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const { url, db } = await startMysqlApp(t, current);
    await post(url, '/addtosql');
    writeMarkerOnReplica();
    await eventually(() => db.replicaStates()[0]?.healthy === true, 'the replica is healthy');

    // An import in flight when the primary dies.
    const big = join(dir, 'big.csv');
    await writeFile(big, [...generateUsers(400_000)].join(''));
    const upload = post(url, '/addtosql?mode=append', {
      headers: { 'content-type': 'text/csv' },
      body: await import('node:fs/promises').then((fs) => fs.readFile(big)),
    });
    await eventually(
      () =>
        Number(current.primary.sql('SELECT COUNT(*) FROM information_schema.innodb_trx').trim()) >
        0,
      'the import transaction is open on the primary',
      60_000,
    );
    await current.primary.kill();
    const cut = await upload;
    assert.equal(cut.status, 503);
    assert.equal(cut.body.code, 'ERR_DB_PRIMARY_UNAVAILABLE');
    // Reads must go on after the probes have seen the primary gone and the replica's I/O
    // thread retrying, not just in the moment before they notice.
    await eventually(() => db.primaryState().healthy === false, 'the probe sees the primary down');
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.equal(db.replicaStates()[0]?.healthy, true, db.replicaStates()[0]?.reason);

    const reads = await getUsers(url);
    assert.equal(reads.status, 200);
    assert.equal(reads.names.length, 1001);
    assert.equal(reads.names.at(-1), MARKER_NAME, 'served by the replica');
    const health = await fetch(`${url}/healthcheck`);
    assert.equal(health.status, 200);
    const view = (await (await fetch(`${url}/healthcheck?format=json`)).json()) as {
      status: string;
      checks: Record<string, { status: string; output?: string }[]>;
    };
    assert.equal(view.status, 'warn');
    assert.equal(view.checks['database:primary']?.[0]?.status, 'warn');
    assert.match(
      view.checks['database:primary']?.[0]?.output ?? '',
      /^unreachable: .*; writes answer 503$/,
    );

    const write = await post(url, '/addtosql?mode=append', {
      headers: { 'content-type': 'text/csv' },
      body: 'NAME,STREET,CITY,STATE,USER_DATE\nA,B,C,NY,01/01/01\n',
    });
    assert.equal(write.status, 503);
    assert.equal(write.body.code, 'ERR_DB_PRIMARY_UNAVAILABLE');
    assert.match(String(write.body.detail), /^primary database unavailable/);

    await current.primary.start();
    assert.equal(countOn('primary'), 1000, 'no partial rows after the primary is back');
    current.replica.sql(`SET sql_log_bin=0; DELETE FROM users.users WHERE id = ${MARKER_ID}`);
    const again = await post(url, '/addtosql?mode=append', {
      headers: { 'content-type': 'text/csv' },
      body: 'NAME,STREET,CITY,STATE,USER_DATE\nA,B,C,NY,01/01/01\n',
    });
    assert.deepEqual(again, { status: 200, body: { status: 'imported', rows: 1 } });
  });

  it('20 concurrent /addtosql calls from two instances leave exactly one copy', async (t) => {
    const current = requirePair();
    const first = await startMysqlApp(t, current);
    const second = await startMysqlApp(t, current);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, index) =>
        post((index % 2 === 0 ? first : second).url, '/addtosql'),
      ),
    );
    assert.deepEqual(
      results.map((r) => r.status),
      Array<number>(20).fill(200),
    );
    assert.deepEqual(results.map((r) => r.body.status).sort(), [
      'imported',
      ...Array<string>(19).fill('skipped'),
    ]);
    assert.equal(countOn('primary'), 1000);
    assert.equal(countOn('replica'), 1000);
  });

  it('every writer takes one write lock: an import waits while it is held, 409 if held too long', async (t) => {
    const current = requirePair();
    // A short query timeout makes the lock wait short (80% of it).
    const impatient = await startMysqlApp(t, current, { DB_QUERY_TIMEOUT_MS: '1500' });
    const patient = await startMysqlApp(t, current);
    await post(impatient.url, '/addtosql');
    const holder = await createConnection({ uri: current.primary.url });
    t.after(() => holder.end());
    const [[taken]] = await holder.query<RowDataPacket[]>(
      "SELECT GET_LOCK('users-api.write', 0) AS locked",
    );
    assert.equal(taken?.locked, 1);

    const csv = { headers: { 'content-type': 'text/csv' } };
    for (const mode of ['append', 'replace', 'if-empty']) {
      const refused = await post(impatient.url, `/addtosql?mode=${mode}`, {
        ...csv,
        body: 'NAME,STREET,CITY,STATE,USER_DATE\nA,B,C,NY,01/01/01\n',
      });
      assert.equal(refused.status, 409, mode);
      assert.equal(refused.body.code, 'ERR_WRITE_IN_PROGRESS');
      assert.match(String(refused.body.detail), /held the write lock for 1\.2 s; try again/);
    }
    assert.equal(countOn('primary'), 1000, 'nothing written');

    const waiting = post(patient.url, '/addtosql?mode=append', {
      ...csv,
      body: 'NAME,STREET,CITY,STATE,USER_DATE\nA,B,C,NY,01/01/01\n',
    });
    const settled = await Promise.race([
      waiting.then(() => 'settled'),
      new Promise((resolve) => setTimeout(resolve, 500, 'waiting')),
    ]);
    assert.equal(settled, 'waiting', 'the append waits for the lock');
    await holder.query("SELECT RELEASE_LOCK('users-api.write')");
    assert.deepEqual(await waiting, { status: 200, body: { status: 'imported', rows: 1 } });
    assert.equal(countOn('primary'), 1001);
  });

  it('after /addtosql returns, /api on another instance already shows every row', async (t) => {
    const current = requirePair();
    // The replica applies every event a second late: without the wait, it would read stale rows.
    current.replica.sql('STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=1; START SLAVE');
    const writer = await startMysqlApp(t, current);
    const reader = await startMysqlApp(t, current);
    await eventually(
      () =>
        writer.db.replicaStates()[0]?.healthy === true &&
        reader.db.replicaStates()[0]?.healthy === true,
      'both instances see a healthy replica',
    );
    current.waitForReplication(); // the delayed replica has created the tables

    // The start-up import swaps in a new table: the delayed replica has it when the call returns.
    assert.deepEqual(await post(writer.url, '/addtosql'), {
      status: 200,
      body: { status: 'imported', rows: 1000 },
    });
    assert.equal(countOn('replica'), 1000, 'the replica applied the swap before the answer');
    assert.equal((await getUsers(reader.url)).names.length, 1000);

    // An append: the marker proves the next read came from the replica, with the new row.
    writeMarkerOnReplica();
    assert.deepEqual(
      await post(writer.url, '/addtosql?mode=append', {
        headers: { 'content-type': 'text/csv' },
        body: 'NAME,STREET,CITY,STATE,USER_DATE\nJust Added,S,C,NY,01/01/01\n',
      }),
      { status: 200, body: { status: 'imported', rows: 1 } },
    );
    const { names } = await getUsers(reader.url);
    assert.equal(names.length, 1002);
    assert.deepEqual(names.slice(-2), ['Just Added', MARKER_NAME], 'read from the replica');
    current.replica.sql(`SET sql_log_bin=0; DELETE FROM users.users WHERE id = ${MARKER_ID}`);
  });

  it('a replica that does not apply a write in REPLICA_WAIT_MS leaves rotation until it has', async (t) => {
    const current = requirePair();
    current.replica.sql('STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=3; START SLAVE');
    const { url, db } = await startMysqlApp(t, current, { REPLICA_WAIT_MS: '300' });
    await eventually(() => db.replicaStates()[0]?.healthy === true, 'the replica is healthy');
    assert.deepEqual(await post(url, '/addtosql'), {
      status: 200,
      body: { status: 'imported', rows: 1000 },
    });
    assert.equal(db.replicaStates()[0]?.healthy, false);
    assert.equal(db.replicaStates()[0]?.reason, 'did not apply the last write within 300 ms');
    assert.equal((await getUsers(url)).names.length, 1000, 'read from the primary meanwhile');
    await eventually(
      () => db.replicaStates()[0]?.healthy === true,
      'the replica catches up and rejoins',
    );
    assert.equal(countOn('replica'), 1000);
  });

  it('a write waits about the silent-server check for a frozen replica, not the query timeout', async (t) => {
    const current = requirePair();
    // Probes far apart: the write, not a probe, must be what finds the replica silent.
    const { url, db } = await startMysqlApp(t, current, { REPLICA_PROBE_INTERVAL_MS: '60000' });
    await eventually(async () => {
      await db.probeServers();
      return db.replicaStates()[0]?.healthy === true;
    }, 'the replica is healthy');
    const pid = current.replica.pid()!;
    const thaw = () => process.kill(pid, 'SIGCONT');
    t.after(thaw);
    process.kill(pid, 'SIGSTOP');
    const started = Date.now();
    const imported = await post(url, '/addtosql');
    const elapsedMs = Date.now() - started;
    thaw();
    assert.deepEqual(imported, { status: 200, body: { status: 'imported', rows: 1000 } });
    // DB_FIRST_RESPONSE_TIMEOUT_MS + DB_PROBE_TIMEOUT_MS (1 s each) plus the import itself;
    // DB_QUERY_TIMEOUT_MS is 10 s.
    assert.ok(elapsedMs < 4000, `the write answered after ${elapsedMs} ms`);
    assert.equal(db.replicaStates()[0]?.healthy, false);
    assert.match(db.replicaStates()[0]?.reason ?? '', /ERR_DB_SERVER_SILENT/);
    assert.equal((await getUsers(url)).names.length, 1000, 'read from the primary meanwhile');
  });
});
