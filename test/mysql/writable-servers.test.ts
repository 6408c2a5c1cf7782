import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MariadbPair } from '../../scripts/mariadb-pair.js';
import { eventually, mariadbPairSuite, startMysqlApp } from '../helpers/mariadb.js';

// Writer discovery: every configured server is asked `@@read_only`; writes go to the one that
// is writable, never to two.

const CSV_ROW = 'NAME,STREET,CITY,STATE,USER_DATE\nAda Append,S,C,NY,01/01/01\n';

async function append(url: string) {
  const response = await fetch(`${url}/addtosql?mode=append`, {
    method: 'POST',
    headers: { 'content-type': 'text/csv' },
    body: CSV_ROW,
  });
  return {
    status: response.status,
    type: response.headers.get('content-type'),
    body: (await response.json()) as Record<string, unknown>,
  };
}

async function post(url: string, path: string) {
  const response = await fetch(`${url}${path}`, { method: 'POST' });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

async function apiNames(url: string): Promise<{ status: number; names: string[] }> {
  const response = await fetch(`${url}/api`);
  const body = (await response.json()) as { NAME: string }[];
  return { status: response.status, names: Array.isArray(body) ? body.map((u) => u.NAME) : [] };
}

interface HealthView {
  status: string;
  checks: Record<
    string,
    { componentId?: string; status: string; output?: string; writers?: string[] }[]
  >;
}

async function health(url: string): Promise<HealthView> {
  const response = await fetch(`${url}/healthcheck`, {
    headers: { accept: 'application/json' },
  });
  return (await response.json()) as HealthView;
}

async function writableServersMetric(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const match = /^users_db_writable_servers (\d+)$/m.exec(text);
  assert.ok(match, 'users_db_writable_servers is exported');
  return Number(match[1]);
}

function countOn(pair: MariadbPair, server: 'primary' | 'replica'): number {
  return Number(pair[server].sql('SELECT COUNT(*) FROM users.users').trim());
}

const nameOf = (server: { port: number }) => `127.0.0.1:${server.port}`;

describe('writer discovery on the MariaDB pair: read_only decides', { timeout: 600_000 }, () => {
  const pairSuite = mariadbPairSuite();
  pairSuite.register();

  it('two writable servers are a split brain: writes refused on both, reads go on', async (t) => {
    const pair = pairSuite.require();
    const { url, db } = await startMysqlApp(t, pair);
    assert.deepEqual(await post(url, '/addtosql'), {
      status: 200,
      body: { status: 'imported', rows: 1000 },
    });
    await eventually(() => db.replicaStates()[0]?.healthy === true, 'the replica is healthy');
    assert.equal(await writableServersMetric(url), 1);

    pair.replica.sql('SET GLOBAL read_only=0');
    t.after(() => pair.replica.sql('SET GLOBAL read_only=1'));
    await eventually(
      () => db.primaryState().writers?.length === 2,
      'the probe finds both servers writable',
    );

    const refused = await append(url);
    assert.equal(refused.status, 503);
    assert.equal(refused.type, 'application/problem+json; charset=utf-8');
    assert.equal(refused.body.code, 'ERR_DB_SPLIT_BRAIN');
    assert.doesNotMatch(String(refused.body.detail), /127\.0\.0\.1/, 'no host names for clients');
    assert.equal(countOn(pair, 'primary'), 1000, 'nothing written to the primary');
    assert.equal(countOn(pair, 'replica'), 1000, 'nothing written to the replica');
    const read = await apiNames(url);
    assert.equal(read.status, 200);
    assert.equal(read.names.length, 1000);

    const view = await health(url);
    assert.equal(view.status, 'warn');
    const [primary] = view.checks['database:primary'] ?? [];
    assert.equal(primary?.status, 'warn');
    assert.deepEqual(primary?.writers, [nameOf(pair.primary), nameOf(pair.replica)]);
    assert.match(primary?.output ?? '', /^split brain: 2 servers are writable/);
    assert.doesNotMatch(JSON.stringify(view), /app:|password/, 'no credentials');
    assert.equal(await writableServersMetric(url), 2);

    // Healed: writes resume on the primary, without a restart.
    pair.replica.sql('SET GLOBAL read_only=1');
    await eventually(
      () => db.primaryState().writers?.length === 1 && db.primaryState().healthy,
      'one writable server again',
    );
    const accepted = await append(url);
    assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
    assert.equal(countOn(pair, 'primary'), 1001);
    pair.waitForReplication();
    assert.equal(countOn(pair, 'replica'), 1001);
    assert.equal(await writableServersMetric(url), 1);
  });

  it('the primary read-only and no replica writable: writes answer 503, reads go on', async (t) => {
    const pair = pairSuite.require();
    const { url, db } = await startMysqlApp(t, pair);
    await post(url, '/addtosql');
    await eventually(() => db.replicaStates()[0]?.healthy === true, 'the replica is healthy');

    pair.primary.sql('SET GLOBAL read_only=1');
    t.after(() => pair.primary.sql('SET GLOBAL read_only=0'));
    await eventually(() => db.primaryState().healthy === false, 'the probe finds no writer');

    const refused = await append(url);
    assert.equal(refused.status, 503);
    assert.equal(refused.body.code, 'ERR_DB_PRIMARY_UNAVAILABLE');
    assert.match(String(refused.body.detail), /no database server is writable/);
    assert.equal(countOn(pair, 'primary'), 1000);
    assert.equal((await apiNames(url)).names.length, 1000);
    const [primary] = (await health(url)).checks['database:primary'] ?? [];
    assert.equal(primary?.status, 'warn');
    assert.match(primary?.output ?? '', /no server is writable: .* is read-only/);
    assert.equal(primary?.writers, undefined);
    assert.equal(await writableServersMetric(url), 0);

    pair.primary.sql('SET GLOBAL read_only=0');
    await eventually(() => db.primaryState().healthy, 'the primary takes writes again');
    assert.equal((await append(url)).status, 200);
    assert.equal(countOn(pair, 'primary'), 1001);
  });
});

describe('writes follow a promoted replica (real pair)', { timeout: 600_000 }, () => {
  const pairSuite = mariadbPairSuite();
  pairSuite.register();

  it('the promoted replica takes imports; the old primary, read-only, rejoins as a replica', async (t) => {
    const pair = pairSuite.require();
    const { url, db } = await startMysqlApp(t, pair);
    await post(url, '/addtosql');
    await eventually(() => db.replicaStates()[0]?.healthy === true, 'the replica is healthy');

    // The operator's promotion: the old primary read-only first, then the replica writable.
    pair.primary.sql('SET GLOBAL read_only=1');
    pair.replica.sql('STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only=0');
    const promotedAt = Date.now();
    // Bounded: at most 100 attempts, 200 ms apart (the probe runs every 200 ms here).
    let accepted: Awaited<ReturnType<typeof append>> | undefined;
    for (let attempt = 0; attempt < 100 && accepted === undefined; attempt += 1) {
      const answer = await append(url);
      if (answer.status === 200) accepted = answer;
      else {
        assert.equal(answer.status, 503, JSON.stringify(answer.body));
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    assert.ok(accepted, 'a write was accepted on the promoted replica');
    t.diagnostic(`first write accepted ${Date.now() - promotedAt} ms after the promotion`);
    assert.equal(db.primaryState().writer, nameOf(pair.replica));
    assert.equal(countOn(pair, 'replica'), 1001, 'the append landed on the promoted replica');
    assert.equal(countOn(pair, 'primary'), 1000, 'nothing was written to the old primary');

    // A replace import (staging table, swap) runs there too, and /api reads it at once.
    const replaced = await post(url, '/addtosql?mode=replace');
    assert.deepEqual(replaced, { status: 200, body: { status: 'imported', rows: 1000 } });
    assert.equal(countOn(pair, 'replica'), 1000);
    assert.equal((await append(url)).status, 200);
    const read = await apiNames(url);
    assert.equal(read.status, 200);
    assert.equal(read.names.length, 1001);
    assert.equal(read.names.at(-1), 'Ada Append');

    const [primary] = (await health(url)).checks['database:primary'] ?? [];
    assert.equal(primary?.status, 'pass');
    assert.match(primary?.output ?? '', /writes go to 127\.0\.0\.1:\d+, a promoted replica/);
    assert.equal(await writableServersMetric(url), 1);
    // The old primary is listed as a replica now, out of rotation until it replicates.
    const oldPrimary = () =>
      db.replicaStates().find((replica) => replica.name === nameOf(pair.primary));
    assert.equal(oldPrimary()?.healthy, false);

    // The operator points the old primary at the new one: it serves reads again, and the next
    // write waits for it (read-your-writes through the GTID wait).
    pair.replica.sql(
      "CREATE USER 'repl2'@'127.0.0.1' IDENTIFIED BY 'repl2-pass'; GRANT REPLICATION SLAVE ON *.* TO 'repl2'@'127.0.0.1'",
    );
    pair.primary.sql(
      `CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=${pair.replica.port}, ` +
        "MASTER_USER='repl2', MASTER_PASSWORD='repl2-pass', MASTER_USE_GTID=current_pos, " +
        'MASTER_CONNECT_RETRY=1; START SLAVE',
    );
    await eventually(() => oldPrimary()?.healthy === true, 'the old primary serves reads');
    assert.equal((await append(url)).status, 200);
    assert.equal(countOn(pair, 'primary'), 1002, 'the write reached the old primary before 200');
    assert.equal(db.primaryState().writer, nameOf(pair.replica));
  });
});
