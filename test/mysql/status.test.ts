import assert from 'node:assert/strict';
import { get } from 'node:http';
import { describe, it } from 'node:test';
import type { StatusSnapshot } from '../../src/monitor/status-snapshot-schema.js';
import { mariadbPairSuite, startMysqlApp } from '../helpers/mariadb.js';

const pairSuite = mariadbPairSuite();

/** The snapshots of GET /status/events, as they arrive; the stream closes when the test ends. */
function watchStatus(url: string, signal: AbortSignal) {
  const texts: string[] = [];
  const waiting: (() => void)[] = [];
  get(`${url}/status/events`, { agent: false, signal }, (response) => {
    assert.equal(response.statusCode, 200);
    response.setEncoding('utf8');
    let buffered = '';
    response.on('data', (chunk: string) => {
      buffered += chunk;
      let end: number;
      while ((end = buffered.indexOf('\n\n')) !== -1) {
        const block = buffered.slice(0, end);
        buffered = buffered.slice(end + 2);
        if (!block.startsWith('event: status\ndata: ')) continue;
        texts.push(block.slice('event: status\ndata: '.length));
        waiting.splice(0).forEach((wake) => wake());
      }
    });
  }).on('error', (error) => {
    if (!signal.aborted) throw error;
  });
  /** The first snapshot from now on for which `ready` holds; its raw JSON text too. */
  return async (
    what: string,
    ready: (snapshot: StatusSnapshot) => boolean,
    timeoutMs = 30_000,
  ): Promise<{ snapshot: StatusSnapshot; text: string }> => {
    const deadline = Date.now() + timeoutMs;
    let seen = texts.length;
    for (;;) {
      while (seen < texts.length) {
        const text = texts[seen++]!;
        const snapshot = JSON.parse(text) as StatusSnapshot;
        if (ready(snapshot)) return { snapshot, text };
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`no status event within ${timeoutMs} ms where ${what}: ${texts.at(-1)}`);
      }
      await new Promise<void>((wake) => {
        const timer = setTimeout(wake, left);
        waiting.push(() => {
          clearTimeout(timer);
          wake();
        });
      });
    }
  };
}

describe('status feed on the MariaDB pair (real replication)', { timeout: 300_000 }, () => {
  pairSuite.register();

  it('the stream shows a replica going down and coming back, by label, never by host', async (t) => {
    const pair = pairSuite.require();
    const { url } = await startMysqlApp(t, pair, { STATUS_INTERVAL_MS: '250' });
    const loaded = await fetch(`${url}/addtosql`, { method: 'POST' });
    assert.equal(loaded.status, 200);
    await loaded.text();
    const stream = new AbortController();
    t.after(() => stream.abort());
    const next = watchStatus(url, stream.signal);
    const hosts = [pair.primary, pair.replica].map((server) => new URL(server.url).host);
    const noHostIn = (text: string) => {
      for (const host of [...hosts, '127.0.0.1', String(pair.replica.port)]) {
        assert.ok(!text.includes(host), `${host} in ${text}`);
      }
    };

    const healthy = await next(
      'both servers are healthy',
      (s) => s.databases.every((db) => db.healthy) && s.problems.length === 0,
    );
    noHostIn(healthy.text);
    assert.deepEqual(
      healthy.snapshot.databases.map(({ lagSeconds, ...rest }) => ({
        ...rest,
        lagKnown: lagSeconds !== null,
      })),
      [
        {
          name: 'primary',
          role: 'primary',
          reachable: true,
          writable: true,
          healthy: true,
          reason: null,
          lagKnown: false,
        },
        {
          name: 'replica 1',
          role: 'replica',
          reachable: true,
          writable: false,
          healthy: true,
          reason: null,
          lagKnown: true,
        },
      ],
    );
    assert.equal(healthy.snapshot.data.rows, 1000);
    assert.equal(healthy.snapshot.lastImport?.outcome, 'imported');

    await pair.replica.kill();
    const down = await next(
      'the replica is unreachable',
      (s) => s.databases[1]?.reachable === false,
    );
    noHostIn(down.text);
    assert.equal(down.snapshot.databases[1]?.healthy, false);
    assert.match(down.snapshot.databases[1]?.reason ?? '', /^unreachable: /);
    assert.ok(
      down.snapshot.problems.some((problem) =>
        problem.startsWith('replica 1: out of the read rotation: unreachable'),
      ),
      JSON.stringify(down.snapshot.problems),
    );
    assert.equal(down.snapshot.databases[0]?.healthy, true, 'the primary goes on');

    await pair.replica.start();
    const back = await next(
      'the replica is back in rotation',
      (s) => s.databases[1]?.healthy === true && s.problems.length === 0,
      60_000,
    );
    noHostIn(back.text);
  });
});
