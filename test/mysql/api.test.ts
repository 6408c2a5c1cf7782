import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import type { MariadbPair } from '../../scripts/mariadb-pair.js';
import { generateUsers } from '../../scripts/generate-users-lib.js';
import { listUsers } from '../../src/db/users-repository.js';
import { eventually, mariadbPairSuite, startMysqlApp, type MysqlApp } from '../helpers/mariadb.js';
import {
  idleStreamDrill,
  loadGeneratedUsers,
  stalledReadersDrill,
} from '../helpers/slow-readers.js';
import { contractOf, storeTrickyUsers, TRICKY_CITY } from '../helpers/tricky-users.js';

const pairSuite = mariadbPairSuite();

function requirePair(): MariadbPair {
  return pairSuite.require();
}

type ApiUser = Record<string, string | number>;

async function getUsers(url: string, path = '/api'): Promise<{ etag: string; users: ApiUser[] }> {
  const response = await fetch(`${url}${path}`);
  assert.equal(response.status, 200);
  return { etag: response.headers.get('etag') ?? '', users: (await response.json()) as ApiUser[] };
}

async function append(url: string, csv: string) {
  const response = await fetch(`${url}/addtosql?mode=append`, {
    method: 'POST',
    headers: { 'content-type': 'text/csv' },
    body: csv,
  });
  assert.equal(response.status, 200, await response.text());
}

describe('/api on MariaDB primary + replica', { timeout: 600_000 }, () => {
  pairSuite.register();

  it('a write through instance A shows on instance B within API_CACHE_CHECK_MS', async (t) => {
    const a = await startMysqlApp(t, requirePair(), { API_CACHE_CHECK_MS: '250' });
    const b = await startMysqlApp(t, requirePair(), { API_CACHE_CHECK_MS: '250' });
    await eventually(
      () => a.db.replicaStates()[0]?.healthy === true && b.db.replicaStates()[0]?.healthy === true,
      'both instances see a healthy replica',
    );
    await append(a.url, [...generateUsers(1000)].join(''));
    const before = await getUsers(b.url);
    assert.equal(before.users.length, 1000);
    assert.match(before.etag, /^"v\d+-/);
    // B now serves from its cache; A's next write bumps the data version in the database.
    await append(a.url, 'NAME,STREET,CITY,STATE,USER_DATE\nZed Written-On-A,S,C,NY,01/01/01\n');
    // A sees it at once: its own write cleared its knowledge of the version.
    assert.equal((await getUsers(a.url)).users.at(-1)?.NAME, 'Zed Written-On-A');
    // B within its check interval (a bounded wait; no assertion on time on a shared machine).
    await eventually(
      async () => (await getUsers(b.url)).users.at(-1)?.NAME === 'Zed Written-On-A',
      'instance B shows the write made through A',
      10_000,
    );
    const afterWrite = await getUsers(b.url);
    assert.equal(afterWrite.users.length, 1001);
    assert.notEqual(afterWrite.etag, before.etag);
    // Both instances, same data version and bytes: the same strong ETag.
    assert.equal((await getUsers(a.url)).etag, afterWrite.etag);
    const revalidated = await fetch(`${b.url}/api`, {
      headers: { 'if-none-match': afterWrite.etag },
    });
    assert.equal(revalidated.status, 304);
  });

  it('streams, filters, sorts and pages the same way as on SQLite', async (t) => {
    const cached = await startMysqlApp(t, requirePair());
    const streamed = await startMysqlApp(t, requirePair(), {
      API_CACHE_MAX_BYTES: '0',
      API_BODY_DIR: 'off',
    });
    await storeTrickyUsers(cached.db);
    await append(cached.url, [...generateUsers(4997)].join(''));
    await eventually(
      () => streamed.db.replicaStates()[0]?.healthy === true,
      'the replica is healthy',
    );
    const fromCache = await (await fetch(`${cached.url}/api`)).text();
    const fromStream = await (await fetch(`${streamed.url}/api`)).text();
    assert.equal(fromStream, fromCache);
    // Released once its transaction ends: a COMMIT after the last byte, which may reach the
    // client first.
    await eventually(
      () => streamed.db.activeSnapshots() === 0,
      'the stream released its snapshot',
      5000,
    );
    const all = JSON.parse(fromCache) as ApiUser[];
    assert.equal(all.length, 5000);
    // MariaDB writes the JSON (JSON_QUOTE): the same values, in load order, as stored.
    assert.deepEqual(all, (await streamed.db.read(listUsers)).map(contractOf));
    assert.equal(all[1]?.CITY, TRICKY_CITY);

    // utf8mb4_bin compares exactly; the name filter still ignores case (and here accents too).
    const du = all.filter((user) => String(user.NAME).toLowerCase().startsWith('du'));
    assert.deepEqual((await getUsers(streamed.url, '/api?name=DU')).users, du);
    const ny = all.filter((user) => user.STATE === 'NY');
    assert.deepEqual((await getUsers(streamed.url, '/api?state=NY')).users, ny);
    const count = (await (await fetch(`${streamed.url}/api/count?state=NY`)).json()) as {
      count: number;
    };
    assert.equal(count.count, ny.length);

    let url: string | undefined = `${streamed.url}/api?sort=-NAME&limit=1000&fields=ID,NAME`;
    const seen: { ID: number; NAME: string }[] = [];
    let lastPage = '';
    for (let pages = 0; url !== undefined && pages < 10; pages += 1) {
      const response = await fetch(url);
      const users = (await response.json()) as { ID: number; NAME: string }[];
      if (users.length > 0) lastPage = url;
      seen.push(...users);
      const next = /<([^>]+)>; rel="next"/.exec(response.headers.get('link') ?? '')?.[1];
      url = next === undefined ? undefined : `${streamed.url}${next}`;
    }
    assert.equal(seen.length, 5000);
    // Back again by rel="prev" from the last page: the same rows, page by page.
    const back: { ID: number }[][] = [];
    url = lastPage;
    for (let pages = 0; url !== undefined && pages < 10; pages += 1) {
      const response = await fetch(url);
      back.unshift((await response.json()) as { ID: number }[]);
      const prev = /<([^>]+)>; rel="prev"/.exec(response.headers.get('link') ?? '')?.[1];
      url = prev === undefined ? undefined : `${streamed.url}${prev}`;
    }
    assert.deepEqual(
      back.flat().map((user) => user.ID),
      seen.map((user) => user.ID),
    );
    assert.equal(new Set(seen.map((user) => user.ID)).size, 5000);
    for (let index = 1; index < seen.length; index += 1) {
      const [previous, current] = [seen[index - 1]!, seen[index]!];
      assert.ok(
        previous.NAME > current.NAME ||
          (previous.NAME === current.NAME && previous.ID > current.ID),
        `order at ${index}`,
      );
    }
  });

  it('replace swaps in a staged table: ids from 1 in file order, appends after them, nothing left over', async (t) => {
    const pair = requirePair();
    const app = await startMysqlApp(t, pair);
    await append(app.url, [...generateUsers(3)].join(''));
    const replacement = [...generateUsers(5000)];
    const replace = async (csv: string) =>
      fetch(`${app.url}/addtosql?mode=replace`, {
        method: 'POST',
        headers: { 'content-type': 'text/csv' },
        body: csv,
      });
    const replaced = await replace(replacement.join(''));
    assert.deepEqual(await replaced.json(), { status: 'imported', rows: 5000 });
    await append(app.url, 'NAME,STREET,CITY,STATE,USER_DATE\nLast One,S,C,NY,01/01/01\n');

    const { users } = await getUsers(app.url);
    assert.equal(users.length, 5001);
    const first = (await getUsers(app.url, '/api?limit=1&fields=ID,NAME')).users;
    assert.deepEqual(first, [{ ID: 1, NAME: users[0]?.NAME }]);
    const lastById = await fetch(`${app.url}/api/users/5001`);
    assert.equal(((await lastById.json()) as ApiUser).NAME, 'Last One');

    // A rejected replace changes nothing and leaves no staging table behind.
    const rejected = await replace('NAME,STREET,CITY,STATE,USER_DATE\nA,B,C,XX,01/01/01\n');
    assert.equal(rejected.status, 422);
    assert.equal((await getUsers(app.url)).users.length, 5001);
    pair.waitForReplication();
    for (const server of [pair.primary, pair.replica]) {
      assert.equal(
        server.sql("SHOW TABLES FROM users LIKE 'users%'").trim(),
        'users',
        `${server.name}: only the live table`,
      );
      assert.equal(
        server
          .sql(
            "SELECT GROUP_CONCAT(index_name, ' ', column_name ORDER BY column_name) FROM information_schema.statistics WHERE table_schema = 'users' AND table_name = 'users' AND index_name <> 'PRIMARY'",
          )
          .trim(),
        'users_city_idx city,users_name_idx name,users_state_idx state,users_user_date_key_idx user_date_key',
        `${server.name}: the indexes /api's filters use, under their migrated names`,
      );
    }
  });

  it('clients that stop reading hold at most MAX_CONCURRENT_STREAMS connections, outside the pool', async (t) => {
    // Twice the pool's connections in stalled readers: none of them may take a pooled one.
    const app = await startMysqlApp(t, requirePair(), {
      DB_POOL_SIZE: '4',
      MAX_CONCURRENT_STREAMS: '3',
      STREAM_IDLE_TIMEOUT_MS: '600000',
    });
    await loadGeneratedUsers(app.db, 200_000);
    await eventually(() => app.db.replicaStates()[0]?.healthy === true, 'the replica is healthy');
    const instance = { url: app.url, maxStreams: 3, activeStreams: () => app.db.activeSnapshots() };
    await stalledReadersDrill(instance, { readers: 8 });
    // The same data through an instance that cuts a client idle for 500 ms.
    const cutting = await startMysqlApp(t, requirePair(), { STREAM_IDLE_TIMEOUT_MS: '500' });
    await idleStreamDrill(
      { url: cutting.url, maxStreams: 8, activeStreams: () => cutting.db.activeSnapshots() },
      { idleTimeoutMs: 500 },
    );
  });

  it('a stream whose replica freezes mid-body goes on from the primary: whole, about 2 s late; cut if a write landed', async (t) => {
    const pair = requirePair();
    const app = await startStreamingApp(t, pair);
    const pid = pair.replica.pid()!;
    const thaw = () => process.kill(pid, 'SIGCONT');
    t.after(thaw);
    const freeze = () => {
      process.kill(pid, 'SIGSTOP');
    };
    // Bare (id keyset) and sorted (NAME keyset) streams both carry their cursor in each page.
    for (const path of ['/api', '/api?sort=-NAME&format=csv']) {
      const { whole, text, cut, extraMs, unhitMs } = await streamHittingReplica(app, path, freeze);
      thaw();
      t.diagnostic(
        `STREAM FIGURE ${path}: ${extraMs} ms longer than unfrozen (${unhitMs} ms), ${text.length} chars`,
      );
      assert.equal(cut, undefined, `${path}: the body was not cut`);
      assert.equal(text.length, whole.length, `${path}: the body is whole`);
      assert.ok(text === whole, `${path}: the body is the unfrozen one`);
      // DB_FIRST_RESPONSE_TIMEOUT_MS + DB_PROBE_TIMEOUT_MS (1 s each) and the move, with room
      // for a loaded machine; DB_QUERY_TIMEOUT_MS is 10 s.
      assert.ok(extraMs < 4000, `${path}: ${extraMs} ms longer than unfrozen (${unhitMs} ms)`);
      assert.match(app.db.replicaStates()[0]?.reason ?? '', /^stream page: .*ERR_DB_SERVER_SILENT/);
      await eventually(() => app.db.activeSnapshots() === 0, 'the stream released its snapshots');
    }
    // A write while the replica is silent: no server shows the stream's data any more, so the
    // body is cut rather than finished from other data.
    const { whole, text, cut, extraMs, unhitMs } = await streamHittingReplica(app, '/api', () => {
      freeze();
      return append(app.url, 'NAME,STREET,CITY,STATE,USER_DATE\nLate Writer,S,C,NY,01/01/01\n');
    });
    thaw();
    t.diagnostic(`STREAM FIGURE cut ${extraMs} ms longer than unfrozen (${unhitMs} ms)`);
    assert.match(String((cut as Error | undefined)?.message), /terminated/);
    assert.ok(text.length < whole.length && whole.startsWith(text), 'only the old data was sent');
    assert.ok(extraMs < 4000, `cut ${extraMs} ms later than the whole unfrozen body`);
  });

  it('a stream whose replica is killed mid-body goes on from the primary: whole, at once', async (t) => {
    const pair = requirePair();
    const app = await startStreamingApp(t, pair);
    const kill = () => pair.replica.kill();
    for (const path of ['/api', '/api?sort=-NAME&format=csv']) {
      const { whole, text, cut, extraMs, unhitMs } = await streamHittingReplica(app, path, kill);
      await pair.replica.start();
      t.diagnostic(
        `STREAM FIGURE killed ${path}: ${extraMs} ms longer than unkilled (${unhitMs} ms), ${text.length} chars`,
      );
      assert.equal(cut, undefined, `${path}: the body was not cut`);
      assert.equal(text.length, whole.length, `${path}: the body is whole`);
      assert.ok(text === whole, `${path}: the body is the unkilled one`);
      // A reset needs no silence check: the move alone, with room for a loaded machine.
      assert.ok(extraMs < 2000, `${path}: ${extraMs} ms longer than unkilled (${unhitMs} ms)`);
      // Taken out for the lost connection itself, not for a silence found seconds later.
      assert.match(app.db.replicaStates()[0]?.reason ?? '', /^stream page: (?!.*SILENT)/);
      await eventually(() => app.db.activeSnapshots() === 0, 'the stream released its snapshots');
    }
  });
});

/** An instance that streams every bare /api from 100,000 users, reading them on the replica. */
async function startStreamingApp(t: TestContext, pair: MariadbPair): Promise<MysqlApp> {
  // Probes far apart: the stream's own page, not a probe, must find the replica gone.
  const app = await startMysqlApp(t, pair, {
    API_CACHE_MAX_BYTES: '0',
    API_BODY_DIR: 'off',
    REPLICA_PROBE_INTERVAL_MS: '60000',
  });
  // Far more than the buffers between the page reads and the client (256 KB ahead, socket).
  await loadGeneratedUsers(app.db, 100_000);
  return app;
}

/**
 * `path` read whole from the replica, then again with `hit` done to the replica after the first
 * chunk; `hit`'s promise is awaited once the rest of the body (or its cut) has come.
 */
async function streamHittingReplica(
  app: MysqlApp,
  path: string,
  hit: () => Promise<unknown> | void,
) {
  const healthy = async () => {
    await app.db.probeServers();
    return app.db.replicaStates()[0]?.healthy === true;
  };
  await eventually(healthy, 'the replica is healthy');
  const unhitAt = Date.now();
  const whole = await (await fetch(`${app.url}${path}`)).text();
  const unhitMs = Date.now() - unhitAt;
  await eventually(healthy, 'the replica is healthy');
  const startedAt = Date.now();
  const response = await fetch(`${app.url}${path}`);
  assert.equal(response.status, 200);
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  const decoder = new TextDecoder();
  let text = decoder.decode((await reader.read()).value, { stream: true });
  const hitting = hit();
  let cut: unknown;
  try {
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      text += decoder.decode(chunk.value, { stream: true });
    }
  } catch (error) {
    cut = error;
  }
  const extraMs = Date.now() - startedAt - unhitMs;
  await hitting;
  return { whole, text, cut, extraMs, unhitMs };
}
