import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  haproxyProcess,
  missingClusterBinaries,
  startLocalCluster,
} from '../../scripts/local-cluster.js';
import type { StatusSnapshot } from '../../src/monitor/status-snapshot-schema.js';
import { startBuiltServer } from '../helpers/child-server.js';
import { freePort, pollFor, requireBinary } from '../helpers/external-services.js';
import { REPO_ROOT } from '../helpers/paths.js';

async function statusOf(appUrl: string): Promise<StatusSnapshot> {
  const response = await fetch(`${appUrl}/status.json`);
  assert.equal(response.status, 200);
  return (await response.json()) as StatusSnapshot;
}

describe('the status feed reads HAProxy stats (real HAProxy, built server, SQLite)', () => {
  it('names the web server HAProxy sends traffic to, and the backup once the active one is down', async (t) => {
    if ((await requireBinary(t, ['haproxy'], 'haproxy')) === undefined) return;
    const dir = await mkdtemp(join(tmpdir(), 'users-api-status-haproxy-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const [lbPort, statsPort] = [await freePort(), await freePort()];
    const statsPassword = randomBytes(12).toString('hex');
    await writeFile(join(dir, 'stats_password'), `${statsPassword}\n`, { mode: 0o600 });
    const app = (name: string, statsUrl = `http://127.0.0.1:${statsPort}/`) =>
      startBuiltServer(t, dir, {
        SERVER_NAME: name,
        DATABASE_URL: `sqlite:${join(dir, `${name}.db`)}`,
        DATA_FILE: join(REPO_ROOT, 'data/users.csv'),
        BACKUP_DIR: join(dir, `${name}-backups`),
        HAPROXY_STATS_URL: statsUrl,
        HAPROXY_STATS_PASSWORD_FILE: 'stats_password',
      });
    const [webserver1, webserver2] = [await app('webserver1'), await app('webserver2')];
    const haproxy = haproxyProcess({
      logFile: join(dir, 'haproxy.log'),
      lbPort,
      statsPort,
      statsPassword,
      appAddrs: [new URL(webserver1.url).host, new URL(webserver2.url).host],
    });
    t.after(() => haproxy.stop('SIGKILL'));
    await haproxy.start();

    const bothUp = await pollFor(
      'HAProxy sees both web servers up',
      async () => {
        const status = await statusOf(webserver2.url);
        return status.haproxy?.servers.every((server) => server.status === 'UP')
          ? status
          : undefined;
      },
      20_000,
    );
    assert.deepEqual(bothUp.haproxy, {
      active: 'webserver1',
      servers: [
        { name: 'webserver1', status: 'UP', backup: false },
        { name: 'webserver2', status: 'UP', backup: true },
      ],
    });
    assert.deepEqual(bothUp.problems, []);
    // Through HAProxy the page is served by the active server, and says so.
    const viaLb = await fetch(`http://127.0.0.1:${lbPort}/status.json`);
    assert.equal(viaLb.headers.get('x-served-by'), 'webserver1');
    assert.equal(((await viaLb.json()) as StatusSnapshot).haproxy?.active, 'webserver1');

    await webserver1.stop('SIGKILL');
    const failedOver = await pollFor(
      'HAProxy marks webserver1 down',
      async () => {
        const status = await statusOf(webserver2.url);
        return status.haproxy?.active === 'webserver2' ? status : undefined;
      },
      20_000,
    );
    assert.match(failedOver.haproxy?.servers[0]?.status ?? '', /^DOWN/);
    assert.ok(
      failedOver.problems.some((problem) =>
        /^HAProxy: web server webserver1 is DOWN/.test(problem),
      ),
      JSON.stringify(failedOver.problems),
    );
  });

  it('says in plain words when the stats cannot be read, without the URL or the password', async (t) => {
    if ((await requireBinary(t, ['haproxy'], 'haproxy')) === undefined) return;
    const dir = await mkdtemp(join(tmpdir(), 'users-api-status-haproxy-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const [lbPort, statsPort] = [await freePort(), await freePort()];
    const statsPassword = randomBytes(12).toString('hex');
    await writeFile(join(dir, 'stats_password'), 'not-the-password\n', { mode: 0o600 });
    const server = await startBuiltServer(t, dir, {
      SERVER_NAME: 'webserver1',
      DATABASE_URL: `sqlite:${join(dir, 'users.db')}`,
      DATA_FILE: join(REPO_ROOT, 'data/users.csv'),
      HAPROXY_STATS_URL: `http://127.0.0.1:${statsPort}/`,
      HAPROXY_STATS_PASSWORD_FILE: 'stats_password',
    });
    const host = new URL(server.url).host;
    const haproxy = haproxyProcess({
      logFile: join(dir, 'haproxy.log'),
      lbPort,
      statsPort,
      statsPassword,
      appAddrs: [host, host],
    });
    t.after(() => haproxy.stop('SIGKILL'));
    await haproxy.start();
    const wrongPassword = await statusOf(server.url);
    assert.deepEqual(wrongPassword.haproxy, { active: null, servers: [] });
    assert.deepEqual(wrongPassword.problems, [
      "HAProxy's stats page answered 401: check HAPROXY_STATS_USER and HAPROXY_STATS_PASSWORD_FILE, and that MONITORING_ALLOW lets this instance in",
    ]);

    await haproxy.stop('SIGKILL');
    const gone = await pollFor(
      'the stats read fails',
      async () => {
        const status = await statusOf(server.url);
        return /cannot be read/.test(status.problems.join()) ? status : undefined;
      },
      10_000,
    );
    const text = JSON.stringify(gone);
    assert.ok(!text.includes(String(statsPort)) && !text.includes('not-the-password'), text);
    assert.deepEqual(gone.problems, ["HAProxy's stats page cannot be read (ECONNREFUSED)"]);
  });

  it('in the local cluster (MariaDB pair, two web servers, HAProxy) the feed shows all of it', async (t) => {
    const missing = missingClusterBinaries();
    if (missing.length > 0) {
      const message = `needs ${missing.join(', ')} (apt-get install -y haproxy mariadb-server mariadb-client)`;
      if (process.env.CI === 'true') throw new Error(`${message}: required under CI=true`);
      return t.skip(message);
    }
    const dir = await mkdtemp(join(tmpdir(), 'users-api-status-cluster-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const cluster = await startLocalCluster({ dir: join(dir, 'cluster') });
    t.after(() => cluster.stop());
    const status = await pollFor(
      'the cluster is healthy in the status feed',
      async () => {
        const response = await fetch(`${cluster.lbUrl}/status.json`);
        const snapshot = (await response.json()) as StatusSnapshot;
        return snapshot.problems.length === 0 && snapshot.haproxy?.active === 'webserver1'
          ? snapshot
          : undefined;
      },
      60_000,
    );
    assert.equal(status.instance.name, 'webserver1');
    assert.deepEqual(
      status.databases.map(({ name, role, healthy }) => ({ name, role, healthy })),
      [
        { name: 'primary', role: 'primary', healthy: true },
        { name: 'replica 1', role: 'replica', healthy: true },
      ],
    );
    assert.equal(status.data.rows, 1000);
  });
});
