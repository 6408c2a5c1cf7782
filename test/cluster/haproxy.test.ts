import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { get } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import autocannon from 'autocannon';
import {
  findBinary,
  haproxyProcess,
  missingClusterBinaries,
  startLocalCluster,
  type LocalCluster,
} from '../../scripts/local-cluster.js';
import { freePort } from '../../scripts/mariadb-pair.js';
import { generateUsers } from '../../scripts/generate-users-lib.js';
import { REPO_ROOT } from '../helpers/paths.js';
import { stalledReadersDrill } from '../helpers/slow-readers.js';

/** Under CI=true a missing server binary fails the run; locally it skips loudly. */
function skipReason(missing: string[]): string | undefined {
  if (missing.length === 0) return undefined;
  const message = `HA tests need ${missing.join(', ')} (apt-get install -y haproxy mariadb-server mariadb-client)`;
  if (process.env.CI === 'true') throw new Error(`${message}: required under CI=true`);
  process.stderr.write(`\n!!! SKIPPING HA tests: ${message}\n\n`);
  return message;
}

async function servedBy(cluster: LocalCluster): Promise<string> {
  const response = await fetch(`${cluster.lbUrl}/healthcheck`, {
    signal: AbortSignal.timeout(1000),
  });
  return `${response.status} ${await response.text()}`;
}

async function waitFor(
  condition: () => Promise<boolean>,
  what: string,
  limitMs: number,
): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < limitMs) {
    if (await condition().catch(() => false)) {
      // A check that started in time may have answered late: the limit holds for the answer.
      const elapsed = Date.now() - start;
      if (elapsed <= limitMs) return elapsed;
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`not within ${limitMs} ms: ${what}`);
}

/**
 * GET on HAProxy's stats listener over a new connection each time: HAProxy closes the connection
 * after a 401 auth challenge without announcing it, so a pooled client (fetch) can race the close
 * and send its next request into a dead socket ("fetch failed" in CI).
 */
function statsGet(
  cluster: LocalCluster,
  path: string,
  password?: string,
): Promise<{ status: number; body: string }> {
  const headers =
    password === undefined
      ? {}
      : {
          authorization: `Basic ${Buffer.from(`${cluster.statsUser}:${password}`).toString('base64')}`,
        };
  return new Promise((resolve, reject) => {
    get(`${cluster.statsUrl}${path}`, { agent: false, headers }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      response.on('error', reject);
    }).on('error', reject);
  });
}

/** The server's status column in HAProxy's stats CSV (UP, DOWN, MAINT, "UP 1/3"…). */
async function serverStatus(cluster: LocalCluster, name: string): Promise<string | undefined> {
  const csv = (await statsGet(cluster, '/;csv', cluster.statsPassword)).body;
  const header = csv.split('\n')[0]!.replace(/^# /, '').split(',');
  const row = csv.split('\n').find((line) => line.startsWith(`webservers,${name},`));
  return row?.split(',')[header.indexOf('status')];
}

/**
 * A bounded load on GET /api through HAProxy while `during` runs; every failure counted. What
 * `during` does must end before the load does, or part of it would have run unloaded.
 */
async function loadWhile(cluster: LocalCluster, seconds: number, during: () => Promise<void>) {
  const started = Date.now();
  const load = autocannon({ url: `${cluster.lbUrl}/api`, connections: 16, duration: seconds });
  const duringMs = during().then(() => Date.now() - started);
  const [result, tookMs] = await Promise.all([load, duringMs]);
  assert.ok(
    tookMs < seconds * 1000,
    `the steps under load took ${tookMs} ms of a ${seconds} s load`,
  );
  return {
    requests: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    resets: result.resets,
  };
}

describe('deploy/haproxy/haproxy.cfg', () => {
  it('passes haproxy -c with test values, and refuses to run without a stats password', async (t) => {
    const haproxy = findBinary('haproxy');
    const reason = skipReason(haproxy === undefined ? ['haproxy'] : []);
    if (reason !== undefined || haproxy === undefined)
      return (t as { skip(message?: string): void }).skip(reason);
    const config = join(REPO_ROOT, 'deploy/haproxy/haproxy.cfg');
    const env = {
      APP1_ADDR: '127.0.0.1:9001',
      APP2_ADDR: '127.0.0.1:9002',
      STATS_PASSWORD: 'test-only',
    };
    const { stdout } = await promisify(execFile)(haproxy, ['-c', '-f', config], { env });
    assert.match(stdout, /Configuration file is valid/);
    await assert.rejects(
      promisify(execFile)(haproxy, ['-c', '-f', config], { env: { ...env, STATS_PASSWORD: '' } }),
      /STATS_PASSWORD must be set/,
    );
    await assert.rejects(
      promisify(execFile)(haproxy, ['-c', '-f', config], { env: { ...env, MONITORING_ALLOW: '' } }),
      /MONITORING_ALLOW is empty/,
    );
  });
});

describe(
  'HA edge: HAProxy + webserver1/webserver2 + MariaDB pair (real processes)',
  { timeout: 600_000 },
  () => {
    let cluster: LocalCluster | undefined;
    let dir = '';
    let reason: string | undefined;
    const requireCluster = () => {
      assert.ok(cluster, 'the cluster did not start');
      return cluster;
    };
    const measured: Record<string, unknown> = {};

    before(async () => {
      reason = skipReason(missingClusterBinaries());
      if (reason !== undefined) return;
      dir = await mkdtemp(join(tmpdir(), 'users-api-cluster-'));
      cluster = await startLocalCluster({
        dir,
        env: { SHUTDOWN_DRAIN_MS: '2500', MAX_CONCURRENT_STREAMS: '2' },
      });
    });
    after(async () => {
      await cluster?.stop();
      if (dir !== '') await rm(dir, { recursive: true, force: true });
      // The figures the issue asks for, in the test output for the record (not asserted on time).
      if (Object.keys(measured).length > 0)
        process.stdout.write(`# measured ${JSON.stringify(measured)}\n`);
    });

    it('fails over to webserver2 when webserver1 is killed, and back when it returns', async (t) => {
      if (reason !== undefined) return (t as { skip(message?: string): void }).skip(reason);
      const current = requireCluster();
      assert.equal(await servedBy(current), '200 all good from webserver1');
      const response = await fetch(`${current.lbUrl}/api`);
      assert.equal(response.headers.get('x-served-by'), 'webserver1');
      assert.match(response.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
      const given = await fetch(`${current.lbUrl}/livez`, {
        headers: { 'x-request-id': 'trace-me-123' },
      });
      assert.equal(given.headers.get('x-request-id'), 'trace-me-123');

      await current.webservers[0].stop('SIGKILL');
      measured.failoverMs = await waitFor(
        async () => (await servedBy(current)) === '200 all good from webserver2',
        'the load balancer answers from webserver2',
        3000,
      );
      await current.webservers[0].start();
      measured.failbackMs = await waitFor(
        async () => (await servedBy(current)) === '200 all good from webserver1',
        'traffic returns to webserver1',
        20_000,
      );
    });

    it('a SIGKILL of webserver1 under load costs clients nothing', async (t) => {
      if (reason !== undefined) return (t as { skip(message?: string): void }).skip(reason);
      const current = requireCluster();
      const result = await loadWhile(current, 20, async () => {
        await new Promise((resolve) => setTimeout(resolve, 6000));
        await current.webservers[0].stop('SIGKILL');
      });
      measured.killUnderLoad = result;
      assert.ok(result.requests > 100, `only ${result.requests} requests ran`);
      assert.deepEqual(
        { ...result, requests: 0 },
        { requests: 0, non2xx: 0, errors: 0, timeouts: 0, resets: 0 },
      );
      assert.equal(await servedBy(current), '200 all good from webserver2');
      await current.webservers[0].start();
      await waitFor(
        async () => (await servedBy(current)).endsWith('webserver1'),
        'webserver1 is back',
        20_000,
      );
    });

    it('a rolling restart (SIGTERM, start, for each server) under load costs clients nothing', async (t) => {
      if (reason !== undefined) return (t as { skip(message?: string): void }).skip(reason);
      const current = requireCluster();
      const result = await loadWhile(current, 30, async () => {
        await new Promise((resolve) => setTimeout(resolve, 3000));
        for (const server of current.webservers) {
          await server.stop('SIGTERM');
          await server.start();
          await waitFor(
            async () => (await serverStatus(current, server.name)) === 'UP',
            `${server.name} is back UP in HAProxy`,
            20_000,
          );
        }
      });
      measured.rollingRestartUnderLoad = result;
      assert.ok(result.requests > 100, `only ${result.requests} requests ran`);
      assert.deepEqual(
        { ...result, requests: 0 },
        { requests: 0, non2xx: 0, errors: 0, timeouts: 0, resets: 0 },
      );
    });

    it('a draining instance answers 503 draining on /healthcheck while it still serves', async (t) => {
      if (reason !== undefined) return (t as { skip(message?: string): void }).skip(reason);
      const current = requireCluster();
      const [webserver1] = current.webservers;
      const stopped = webserver1.stop('SIGTERM');
      await waitFor(
        async () => (await fetch(`${webserver1.url}/healthcheck`)).status === 503,
        'webserver1 reports draining',
        2000,
      );
      const health = await fetch(`${webserver1.url}/healthcheck`);
      assert.equal(await health.text(), 'draining: this instance is shutting down');
      assert.equal((await fetch(`${webserver1.url}/api`)).status, 200);
      assert.equal(await stopped, 0, 'webserver1 exits 0 after its drain');
      assert.equal(await servedBy(current), '200 all good from webserver2');
      await webserver1.start();
      await waitFor(
        async () => (await serverStatus(current, 'webserver1')) === 'UP',
        'webserver1 is UP',
        20_000,
      );
    });

    it('the stats page and its /metrics (haproxy_ metrics) need the password', async (t) => {
      if (reason !== undefined) return (t as { skip(message?: string): void }).skip(reason);
      const current = requireCluster();
      assert.equal((await statsGet(current, '/')).status, 401);
      assert.equal((await statsGet(current, '/', 'wrong')).status, 401);
      const page = await statsGet(current, '/', current.statsPassword);
      assert.equal(page.status, 200);
      assert.match(page.body, /webserver2/);
      assert.equal((await statsGet(current, '/metrics')).status, 401);
      const metrics = await statsGet(current, '/metrics', current.statsPassword);
      assert.equal(metrics.status, 200);
      assert.match(metrics.body, /^haproxy_backend_active_servers\{proxy="webservers"\} 1$/m);
      // Through the load balancer the apps' /metrics is open to loopback (the default) too.
      assert.equal((await fetch(`${current.lbUrl}/metrics`)).status, 200);
    });

    it('MONITORING_ALLOW keeps other networks from the stats listener and the apps /metrics', async (t) => {
      if (reason !== undefined) return (t as { skip(message?: string): void }).skip(reason);
      const current = requireCluster();
      const [lbPort, statsPort] = [await freePort(), await freePort()];
      const guarded = haproxyProcess({
        logFile: join(dir, 'haproxy-guarded.log'),
        lbPort,
        statsPort,
        statsPassword: current.statsPassword,
        appAddrs: [
          new URL(current.webservers[0].url).host,
          new URL(current.webservers[1].url).host,
        ],
        env: { MONITORING_ALLOW: '10.0.0.0/8' }, // the tests' 127.0.0.1 is outside it
      });
      await guarded.start();
      try {
        const lb = `http://127.0.0.1:${lbPort}`;
        assert.equal((await fetch(`${lb}/api`)).status, 200);
        for (const path of ['/metrics', '/%6Detrics', '/METRICS', '/metrics?x=1']) {
          assert.equal((await fetch(`${lb}${path}`)).status, 403, `${path} through the LB`);
        }
        const stats = { ...current, statsUrl: `http://127.0.0.1:${statsPort}` };
        for (const path of ['/', '/metrics', '/;csv']) {
          assert.equal((await statsGet(stats, path, current.statsPassword)).status, 403, path);
        }
      } finally {
        await guarded.stop('SIGKILL');
      }
    });

    // Last: it loads 200,000 users, which the load tests above would stream on every request.
    it('clients that stop reading through HAProxy cannot take webserver1 down', async (t) => {
      if (reason !== undefined) return (t as { skip(message?: string): void }).skip(reason);
      const current = requireCluster();
      const [webserver1] = current.webservers;
      const loaded = await fetch(`${webserver1.url}/addtosql?mode=replace`, {
        method: 'POST',
        headers: { authorization: `Bearer ${current.adminToken}`, 'content-type': 'text/csv' },
        body: [...generateUsers(200_000)].join(''),
      });
      assert.equal(loaded.status, 200, await loaded.text());
      const metric = async (name: string) => {
        const text = await (await fetch(`${webserver1.url}/metrics`)).text();
        return Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
      };
      const refusedBefore = await metric('users_streams_refused_total');
      await stalledReadersDrill({
        url: current.lbUrl,
        maxStreams: 2,
        activeStreams: () => metric('users_streams_in_progress'),
      });
      // HAProxy replays a refused GET (retry-on 503, for instances that are closing): each of
      // the 4 refused clients costs webserver1 at most 4 cheap refusals, never a connection.
      const refusals = (await metric('users_streams_refused_total')) - refusedBefore;
      measured.streamRefusalsPerRefusedClient = refusals / 4;
      assert.ok(refusals >= 4 && refusals <= 16, `${refusals} refusals for 4 refused clients`);
      assert.equal(await serverStatus(current, 'webserver1'), 'UP');
      assert.equal(await servedBy(current), '200 all good from webserver1');
    });
  },
);
