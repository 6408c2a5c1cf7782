import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ReplicaState, TargetState } from '../../src/db/database.js';
import { readStatsCsv } from '../../src/monitor/status-haproxy.js';
import { createStatusSnapshot, type HealthReading } from '../../src/monitor/status-snapshot.js';
import { createTrafficMeter, quantileMs } from '../../src/monitor/status-traffic.js';

const SERVERS = [
  { label: 'primary', name: 'db1.internal:3306', host: 'db1.internal' },
  { label: 'replica 1', name: 'db2.internal:3306', host: 'db2.internal' },
  { label: 'replica 2', name: 'db3.internal:3307', host: 'db3.internal' },
];

const replica = (name: string, state: Partial<ReplicaState> = {}): ReplicaState => ({
  name,
  healthy: true,
  reason: undefined,
  lagSeconds: 0,
  lagSource: 'heartbeat',
  probedAt: 0,
  ...state,
});

function snapshotOf(primary: TargetState, replicas: ReplicaState[], checks: HealthReading) {
  return createStatusSnapshot({
    serverName: 'webserver1',
    version: '1.0.0',
    now: () => Date.UTC(2026, 0, 1, 0, 1),
    startedAt: Date.UTC(2026, 0, 1),
    servers: SERVERS,
    primaryState: () => primary,
    replicaStates: () => replicas,
    health: () => Promise.resolve(checks),
    countUsersRows: () => Promise.resolve(10),
    readDataVersion: () => Promise.reject(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })),
    lastImport: () => null,
    lastBackup: () => Promise.reject(Object.assign(new Error('x'), { code: 'EACCES' })),
    haproxy: undefined,
    traffic: () => ({ requestsPerSecond: 0, p99Ms: null }),
  })();
}

describe('status snapshot', () => {
  it('labels a promoted replica primary, the old primary a replica, and hides every host', async () => {
    const snapshot = await snapshotOf(
      {
        healthy: true,
        reason: undefined,
        schemaCurrent: true,
        probedAt: 0,
        writer: 'db2.internal:3306',
        writers: ['db2.internal:3306'],
      },
      [
        replica('db1.internal:3306', { lagSeconds: 2 }),
        replica('db3.internal:3307', {
          healthy: false,
          reason: 'unreachable: connect ETIMEDOUT db3.internal',
          lagSeconds: null,
        }),
      ],
      {
        checks: {
          'database:primary': [
            {
              componentId: 'primary',
              status: 'pass',
              output:
                'writes go to db2.internal:3306, a promoted replica (the configured primary is read-only or unreachable): point DATABASE_URL at it',
            },
          ],
          'database:replicationLag': [
            { componentId: 'db1.internal:3306', status: 'pass' },
            {
              componentId: 'db3.internal:3307',
              status: 'warn',
              output: 'out of the read rotation: unreachable: connect ETIMEDOUT db3.internal',
            },
          ],
        },
      },
    );
    assert.deepEqual(snapshot.databases, [
      {
        name: 'primary',
        role: 'replica',
        reachable: true,
        writable: false,
        healthy: true,
        reason: null,
        lagSeconds: 2,
      },
      {
        name: 'replica 1',
        role: 'primary',
        reachable: true,
        writable: true,
        healthy: true,
        reason: null,
        lagSeconds: null,
      },
      {
        name: 'replica 2',
        role: 'replica',
        reachable: false,
        healthy: false,
        reason: 'unreachable: connect ETIMEDOUT replica 2',
        lagSeconds: null,
      },
    ]);
    assert.deepEqual(snapshot.problems, [
      'writes: writes go to replica 1, a promoted replica (the configured primary is read-only or unreachable): point DATABASE_URL at it',
      'replica 2: out of the read rotation: unreachable: connect ETIMEDOUT replica 2',
      'backups: cannot read the backup status file (EACCES)',
    ]);
    assert.deepEqual(snapshot.data, { version: null, rows: 10 });
    assert.equal(snapshot.instance.uptimeSeconds, 60);
    assert.doesNotMatch(JSON.stringify(snapshot), /internal/);
  });

  it('on a split brain every writable server is shown writable and writes are the problem', async () => {
    const refusal =
      'split brain: 2 servers are writable (read_only=OFF): db1.internal:3306, db2.internal:3306; make every one but the primary read-only';
    const snapshot = await snapshotOf(
      {
        healthy: false,
        reason: refusal,
        schemaCurrent: true,
        probedAt: 0,
        writer: undefined,
        writers: ['db1.internal:3306', 'db2.internal:3306'],
      },
      [replica('db3.internal:3307')],
      {
        checks: {
          'database:primary': [
            { componentId: 'primary', status: 'warn', output: `${refusal}; writes answer 503` },
          ],
        },
      },
    );
    assert.deepEqual(
      snapshot.databases.map(({ name, writable, healthy }) => ({ name, writable, healthy })),
      [
        { name: 'primary', writable: true, healthy: false },
        { name: 'replica 1', writable: true, healthy: false },
        { name: 'replica 2', writable: false, healthy: true },
      ],
    );
    assert.equal(
      snapshot.problems[0],
      'writes: split brain: 2 servers are writable (read_only=OFF): primary, replica 1; make every one but the primary read-only; writes answer 503',
    );
  });
});

describe('HAProxy stats CSV', () => {
  const header =
    '# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,';
  const row = (px: string, sv: string, status: string, bck: string) =>
    `${px},${sv},0,0,0,0,,0,0,0,,0,,0,0,0,0,${status},1,${bck === '1' ? 0 : 1},${bck},`;

  it('names the active server: the first up non-backup, else the first up backup', () => {
    const csv = (first: string) =>
      [
        header,
        row('public', 'FRONTEND', 'OPEN', ''),
        row('webservers', 'webserver1', first, '0'),
        row('webservers', 'webserver2', 'UP', '1'),
        row('webservers', 'BACKEND', 'UP', '0'),
        row('stats', 'BACKEND', 'UP', '0'),
        '',
      ].join('\n');
    assert.deepEqual(readStatsCsv(csv('UP'), 'webservers'), {
      active: 'webserver1',
      servers: [
        { name: 'webserver1', status: 'UP', backup: false },
        { name: 'webserver2', status: 'UP', backup: true },
      ],
      problems: [],
    });
    assert.equal(readStatsCsv(csv('UP 1/3'), 'webservers').active, 'webserver1');
    const down = readStatsCsv(csv('DOWN'), 'webservers');
    assert.equal(down.active, 'webserver2');
    assert.deepEqual(down.problems, ['HAProxy: web server webserver1 is DOWN']);
    assert.deepEqual(readStatsCsv(csv('MAINT'), 'other').problems, [
      'HAProxy has no backend other with servers (HAPROXY_STATS_BACKEND)',
    ]);
    assert.deepEqual(readStatsCsv('<html>login</html>', 'webservers').problems, [
      "HAProxy's stats answer is not its CSV",
    ]);
  });
});

describe('traffic from the request histogram', () => {
  const bounds = [0.001, 0.01, 0.1, 1];

  it('interpolates the p99 within its bucket, as histogram_quantile does', () => {
    assert.equal(quantileMs(0.99, [0, 0, 0, 0, 0], bounds), null);
    // 100 requests, all in (1 ms, 10 ms]: the 99th is 99% of the way through that bucket.
    assert.equal(quantileMs(0.99, [0, 100, 0, 0, 0], bounds), 9.91);
    assert.equal(quantileMs(0.99, [98, 0, 0, 2, 0], bounds), 550);
    assert.equal(quantileMs(0.99, [0, 0, 0, 0, 5], bounds), 1000);
  });

  it('takes the rate over the window from the oldest reading kept', () => {
    let at = 0;
    let totals = { count: 0, buckets: [0, 0, 0, 0, 0] };
    const meter = createTrafficMeter({
      totals: () => totals,
      bounds,
      windowMs: 10_000,
      clock: () => at,
    });
    at = 5000;
    totals = { count: 50, buckets: [0, 50, 0, 0, 0] };
    assert.deepEqual(meter(), { requestsPerSecond: 10, p99Ms: 9.91 });
    at = 20_000;
    totals = { count: 50, buckets: [0, 50, 0, 0, 0] };
    // The 50 requests were 15 s ago: the window base is now the reading at 5 s.
    assert.deepEqual(meter(), { requestsPerSecond: 0, p99Ms: null });
  });
});
