import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { request, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { haproxyProcess } from '../../scripts/local-cluster.js';
import { startBuiltServer, type ChildServer } from '../helpers/child-server.js';
import { freePort, pollFor, requireBinary } from '../helpers/external-services.js';
import { createNetworkNamespace } from '../helpers/network-namespace.js';
import { REPO_ROOT } from '../helpers/paths.js';

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * One GET on a new connection, the path sent as written (no URL normalisation), from
 * `localAddress` when given. The same code runs inside a network namespace (CLIENT below).
 */
function get(
  url: string,
  headers: OutgoingHttpHeaders = {},
  localAddress?: string,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    request(url, { headers, agent: false, localAddress }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () =>
        resolve({ status: response.statusCode ?? 0, headers: response.headers, body }),
      );
      response.on('error', reject);
    })
      .on('error', reject)
      .end();
  });
}

/** The status and headers of a GET whose body may never end (an event stream). */
function headersOf(url: string, localAddress?: string): Promise<Omit<Answer, 'body'>> {
  return new Promise((resolve, reject) => {
    const sent = request(url, { agent: false, localAddress }, (response) => {
      resolve({ status: response.statusCode ?? 0, headers: response.headers });
      sent.destroy();
    });
    sent.on('error', reject).end();
  });
}

/** `get` as a script for `node -e CLIENT <url> <headers as JSON>`, printing the Answer as JSON. */
const CLIENT = `const [url, headers] = process.argv.slice(1);
require('node:http').request(url, { headers: JSON.parse(headers), agent: false }, (response) => {
  let body = '';
  response.setEncoding('utf8');
  response.on('data', (chunk) => (body += chunk));
  response.on('end', () =>
    console.log(JSON.stringify({ status: response.statusCode, headers: response.headers, body })));
}).end();`;

const basic = (password: string) => ({
  authorization: `Basic ${Buffer.from(`admin:${password}`).toString('base64')}`,
});

/** The built server on SQLite with the sample data, as webserver1. */
async function startApp(t: TestContext, dir: string): Promise<ChildServer> {
  return startBuiltServer(t, dir, {
    SERVER_NAME: 'webserver1',
    DATABASE_URL: `sqlite:${join(dir, 'users.db')}`,
    DATA_FILE: join(REPO_ROOT, 'data/users.csv'),
  });
}

interface Edge {
  app: ChildServer;
  lb: string;
  stats: string;
  statsPassword: string;
  log: () => Promise<string>;
}

/**
 * The app behind HAProxy with the real haproxy.cfg (the app as both web servers), listening on
 * `addr`; undefined when the test is skipped (no haproxy).
 */
async function startEdge(
  t: TestContext,
  options: { addr?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<Edge | undefined> {
  if ((await requireBinary(t, ['haproxy'], 'haproxy')) === undefined) return undefined;
  const dir = await mkdtemp(join(tmpdir(), 'users-api-edge-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const app = await startApp(t, dir);
  const [lbPort, statsPort] = [await freePort(), await freePort()];
  const statsPassword = randomBytes(12).toString('hex');
  const host = new URL(app.url).host;
  const logFile = join(dir, 'haproxy.log');
  const haproxy = haproxyProcess({
    logFile,
    lbPort,
    statsPort,
    statsPassword,
    appAddrs: [host, host],
    ...options,
  });
  t.after(() => haproxy.stop('SIGKILL'));
  await haproxy.start();
  const addr = options.addr ?? '127.0.0.1';
  return {
    app,
    lb: `http://${addr}:${lbPort}`,
    stats: `http://${addr}:${statsPort}`,
    statsPassword,
    log: () => readFile(logFile, 'utf8'),
  };
}

const ALL_GOOD = {
  status: 200,
  type: 'text/plain; charset=utf-8',
  body: 'all good from webserver1',
};
const summary = (answer: Answer) => ({
  status: answer.status,
  type: answer.headers['content-type'],
  body: answer.body,
});

describe('HAProxy keeps monitoring endpoints to monitoring networks (real HAProxy, SQLite)', () => {
  it('by default only loopback and private networks reach the stats listener, the apps /metrics and the health JSON', async (t) => {
    const ns = await createNetworkNamespace(t);
    if (ns === undefined) return;
    // MONITORING_ALLOW left unset: the config's own default is what is tested.
    const edge = await startEdge(t, { addr: ns.hostAddress });
    if (edge === undefined) return;
    const fromOutside = async (url: string, headers: OutgoingHttpHeaders = {}) => {
      const { stdout } = await ns.run(process.execPath, [
        '-e',
        CLIENT,
        url,
        JSON.stringify(headers),
      ]);
      return JSON.parse(stdout) as Answer;
    };
    const fromLoopback = (url: string, headers: OutgoingHttpHeaders = {}) =>
      get(url, headers, '127.0.0.1');
    const password = basic(edge.statsPassword);
    const refused = [
      [`${edge.lb}/metrics`, {}],
      [`${edge.lb}/healthcheck?format=json`, {}],
      [`${edge.lb}/healthcheck`, { accept: 'application/health+json' }],
      [`${edge.stats}/metrics`, password],
      [`${edge.stats}/`, password],
    ] as const;
    for (const [url, headers] of refused) {
      assert.equal((await fromOutside(url, headers)).status, 403, `${url} from outside`);
    }
    assert.deepEqual(summary(await fromOutside(`${edge.lb}/healthcheck`)), ALL_GOOD);
    assert.equal((await fromOutside(`${edge.lb}/api`)).status, 200);
    // The refusals above went by the client's address, not by something else about them.
    assert.match(await edge.log(), new RegExp(`^${ns.guestAddress.replaceAll('.', '\\.')}:`, 'm'));

    for (const [url, headers] of refused) {
      assert.equal((await fromLoopback(url, headers)).status, 200, `${url} from loopback`);
    }
    // From an allowed network the stats listener, its exporter included, still needs the password.
    for (const path of ['/metrics', '/']) {
      assert.equal((await fromLoopback(`${edge.stats}${path}`)).status, 401, path);
      assert.equal((await fromLoopback(`${edge.stats}${path}`, basic('wrong'))).status, 401, path);
    }
    const json = await fromLoopback(`${edge.lb}/healthcheck?format=json`);
    assert.equal(json.headers['content-type'], 'application/health+json; charset=utf-8');

    // The status page, its assets and its feed, however the path is spelled.
    const statusPaths = [
      '/status',
      '/status.json',
      '/status/events',
      '/status/assets/status.js',
      '/%73tatus.json',
      '/STATUS/events',
      '/status/',
    ];
    for (const path of statusPaths) {
      const answer = await fromOutside(`${edge.lb}${path}`);
      assert.equal(answer.status, 403, `${path} from outside`);
      assert.doesNotMatch(answer.body, /"databases"/, path);
    }
    assert.equal((await fromLoopback(`${edge.lb}/status.json`)).status, 200);
    const events = await headersOf(`${edge.lb}/status/events`, '127.0.0.1');
    assert.equal(events.status, 200);
    assert.equal(events.headers['content-type'], 'text/event-stream; charset=utf-8');
    // The page and its assets come from the web UI's routes: HAProxy lets them through.
    for (const path of ['/status', '/status/assets/status.js']) {
      assert.notEqual((await fromLoopback(`${edge.lb}${path}`)).status, 403, path);
    }
  });

  it('MONITORING_ALLOW keeps the health JSON from other networks however it is asked for; the plain text stays public', async (t) => {
    const edge = await startEdge(t, { env: { MONITORING_ALLOW: '10.0.0.0/8' } }); // not 127/8
    if (edge === undefined) return;
    for (const url of ['/healthcheck', '/healthcheck?format=text', '/healthcheck?x=1']) {
      assert.deepEqual(summary(await get(`${edge.lb}${url}`)), ALL_GOOD, url);
    }
    const asks: [string, OutgoingHttpHeaders][] = [
      ['/healthcheck?format=json', {}],
      ['/healthcheck?x=1&format=json', {}],
      ['/healthcheck?format=%6Ason', {}],
      ['/healthcheck?%66ormat=json', {}],
      ['/healthcheck?format=json&x=%zz', {}],
      ['/%68ealthcheck?format=json', {}],
      ['/healthcheck', { accept: 'application/health+json' }],
      ['/healthcheck', { accept: 'APPLICATION/HEALTH+JSON' }],
      ['/healthcheck', { accept: 'application/json;q=0.5' }],
      ['/healthcheck', { accept: 'text/plain;q=0.1, application/json' }],
      ['/healthcheck', { accept: ['text/plain', 'application/health+json'] }],
    ];
    for (const [url, headers] of asks) {
      const answer = await get(`${edge.lb}${url}`, headers);
      const what = `${url} ${JSON.stringify(headers)}`;
      assert.doesNotMatch(String(answer.headers['content-type']), /json/, what);
      assert.doesNotMatch(answer.body, /"checks"|"serviceId"/, what);
      // A query HAProxy cannot decode is not refused, but goes on without it: the plain text.
      if (url.includes('%zz')) assert.deepEqual(summary(answer), ALL_GOOD, what);
      else assert.equal(answer.status, 403, what);
    }
    // HAProxy's own refusal carries the request id too, as the apps' answers do.
    const refused = await get(`${edge.lb}/healthcheck?format=json`, {
      'x-request-id': 'trace-refused-1',
    });
    assert.equal(refused.status, 403);
    assert.equal(refused.headers['x-request-id'], 'trace-refused-1');
    // The app itself still answers the JSON: HAProxy's rule is what kept it back.
    const direct = await get(`${edge.app.url}/healthcheck?format=json&x=%zz`);
    assert.equal(direct.headers['content-type'], 'application/health+json; charset=utf-8');
  });
});

describe('HAProxy and the app log one request id (real HAProxy, SQLite)', () => {
  it('keeps an id the app accepts and replaces any other with its own before forwarding', async (t) => {
    const edge = await startEdge(t);
    if (edge === undefined) return;
    const ids: (string | string[] | undefined)[] = [
      'trace-me-123',
      'a'.repeat(128),
      'A.b_c:d-9',
      undefined,
      '',
      'has space',
      'a'.repeat(129),
      'a,b',
      'ünïcode',
      'x'.repeat(20) + '%0d',
      ['one', 'two'],
    ];
    const seen: { id: string; given: string | string[] | undefined; path: string }[] = [];
    for (const [index, given] of ids.entries()) {
      const path = `/livez?case=${index}`;
      const headers = given === undefined ? {} : { 'x-request-id': given };
      const answer = await get(`${edge.lb}${path}`, headers);
      assert.equal(answer.status, 200, path);
      seen.push({ id: String(answer.headers['x-request-id']), given, path });
    }
    const haproxyLog = await pollFor(
      "HAProxy's log lines",
      async () => {
        const text = await edge.log();
        return seen.every(({ path }) => text.includes(` ${path} `)) ? text : undefined;
      },
      10_000,
    );
    for (const { id, given, path } of seen) {
      const what = `X-Request-Id ${JSON.stringify(given)}`;
      const line = haproxyLog.split('\n').find((candidate) => candidate.includes(` ${path} `));
      assert.equal(/ id=(.*)$/.exec(line ?? '')?.[1], id, `${what}: HAProxy logged the app's id`);
      const logged = (): number =>
        edge.app.lines
          .map((text) => JSON.parse(text) as { msg?: string; reqId?: string })
          .filter((entry) => entry.msg === 'request' && entry.reqId === id).length;
      await pollFor(
        `the app's log line for ${id}`,
        () => Promise.resolve(logged() || undefined),
        10_000,
      );
      assert.equal(logged(), 1, `${what}: the app logged ${id} once`);
      if (typeof given === 'string' && /^[A-Za-z0-9._:-]{1,128}$/.test(given)) {
        assert.equal(id, given, `${what} is kept`);
      } else {
        assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$/, what);
      }
    }
  });
});
