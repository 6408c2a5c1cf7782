import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import type { DatabaseExecutor } from '../../src/db/database.js';
import { IGNORE_DATABASE_EVENTS } from '../../src/db/database-observer.js';
import { createReplicaRouter } from '../../src/db/replica-router.js';
import {
  createTopologyMonitor,
  type ReplicationSql,
  type TopologyMonitor,
} from '../../src/db/topology-monitor.js';
import { AppError } from '../../src/errors.js';

const MIGRATION = '0009-newest';

/** What one fake server answers; tests change it between probes. */
interface FakeServer {
  executor: DatabaseExecutor;
  down?: { code: string };
  /** Frozen or partitioned: every statement waits forever, nothing fails. */
  silent?: boolean;
  io: 'running' | 'connecting' | 'stopped';
  sqlRunning: boolean;
  lagSeconds: number | null;
  migrations: string[];
  /** GTID positions applied, as a number (the primary's position is its count of writes). */
  applied: number;
  /** The newest heartbeat it holds (ms on the primary's clock); null: none. */
  heartbeatMs: number | null;
  /** The account may not read its replication status (no SLAVE MONITOR). */
  statusDenied?: boolean;
}

function fakeServer(name: string): FakeServer {
  return {
    executor: { name } as unknown as DatabaseExecutor,
    io: 'running',
    sqlRunning: true,
    lagSeconds: 0,
    migrations: [MIGRATION],
    applied: 0,
    heartbeatMs: null,
  };
}

/** ReplicationSql over fake servers; `clock` moves as waits would take time. */
function fakeReplication(servers: FakeServer[], clock: { now: number }): ReplicationSql {
  const server = (executor: DatabaseExecutor) => {
    const found = servers.find((candidate) => candidate.executor === executor)!;
    if (found.down !== undefined) throw Object.assign(new Error(found.down.code), found.down);
    return found;
  };
  const answers: ReplicationSql = {
    replicaStatus: (executor) => {
      const { io, sqlRunning, lagSeconds, statusDenied } = server(executor);
      if (statusDenied === true) {
        const denied = Object.assign(new Error('denied'), {
          code: 'ER_SPECIFIC_ACCESS_DENIED_ERROR',
        });
        return Promise.reject(denied);
      }
      return Promise.resolve({ ioState: io, sqlRunning, lagSeconds });
    },
    heartbeat: (executor) =>
      Promise.resolve({ beatAtMs: server(executor).heartbeatMs, nowMs: clock.now }),
    ping: (executor) => {
      server(executor);
      return Promise.resolve();
    },
    hasMigration: (executor, migration) =>
      Promise.resolve(server(executor).migrations.includes(migration)),
    primaryPosition: (executor) => Promise.resolve(String(server(executor).applied)),
    waitForPosition: (executor, position, seconds) => {
      const caughtUp = server(executor).applied >= Number(position);
      if (!caughtUp) clock.now += seconds * 1000;
      return Promise.resolve(caughtUp);
    },
  };
  const silent = (executor: DatabaseExecutor) =>
    servers.find((candidate) => candidate.executor === executor)?.silent === true;
  const never = new Promise<never>(() => undefined);
  return {
    replicaStatus: (executor) => (silent(executor) ? never : answers.replicaStatus(executor)),
    heartbeat: (executor) => (silent(executor) ? never : answers.heartbeat(executor)),
    ping: (executor) => (silent(executor) ? never : answers.ping(executor)),
    hasMigration: (executor, migration) =>
      silent(executor) ? never : answers.hasMigration(executor, migration),
    primaryPosition: (executor) => (silent(executor) ? never : answers.primaryPosition(executor)),
    waitForPosition: (executor, position, seconds) =>
      silent(executor) ? never : answers.waitForPosition(executor, position, seconds),
  };
}

/** Budgets of the silent-server tests: short, they wait for them in real time. */
const FIRST_RESPONSE_MS = 50;
const PROBE_TIMEOUT_MS = 50;

interface Logged {
  level: 'info' | 'warn';
  message: string;
  details: object;
}

function setup(t: TestContext, replicaCount = 2) {
  const clock = { now: 1_000_000 };
  const primary = fakeServer('primary');
  const replicas = Array.from({ length: replicaCount }, (_, index) =>
    fakeServer(`replica${index + 1}:3306`),
  );
  const replication = fakeReplication([primary, ...replicas], clock);
  const logged: Logged[] = [];
  const logger = {
    info: (details: object, message: string) => logged.push({ level: 'info', message, details }),
    warn: (details: object, message: string) => logged.push({ level: 'warn', message, details }),
  };
  const events = { routedToPrimary: 0, primaryReachable: [] as boolean[] };
  const observer = {
    ...IGNORE_DATABASE_EVENTS,
    readRoutedToPrimary: () => void (events.routedToPrimary += 1),
    primaryChecked: (reachable: boolean) => void events.primaryReachable.push(reachable),
  };
  const monitor: TopologyMonitor = createTopologyMonitor({
    primary: primary.executor,
    replicas: replicas.map((replica, index) => ({
      name: `replica${index + 1}:3306`,
      executor: replica.executor,
    })),
    replication,
    schemaMigration: MIGRATION,
    maxLagSeconds: 5,
    // The background loop's first round runs at once; tests probe by hand after it.
    probeIntervalMs: 3_600_000,
    probeTimeoutMs: PROBE_TIMEOUT_MS,
    heartbeatStaleMs: 3000,
    logger,
    observer,
    now: () => clock.now,
  });
  t.after(() => monitor.stop());
  const router = createReplicaRouter({
    monitor,
    replication,
    waitMs: 3000,
    firstResponseTimeoutMs: FIRST_RESPONSE_MS,
    probeTimeoutMs: PROBE_TIMEOUT_MS,
    logger,
    observer,
    now: () => clock.now,
  });
  const reasons = () => monitor.replicas().map((replica) => replica.reason ?? 'healthy');
  return { clock, primary, replicas, monitor, router, logged, events, reasons };
}

/** A read that answers with the name of the server it ran on. */
const whichServer = (executor: DatabaseExecutor) =>
  Promise.resolve((executor as unknown as { name: string }).name);

describe('topology monitor', () => {
  it('puts replicas that replicate within the lag limit in rotation, logging each once', async (t) => {
    const { monitor, reasons, logged } = setup(t);
    await monitor.probeAll();
    await monitor.probeAll();
    assert.deepEqual(reasons(), ['healthy', 'healthy']);
    assert.deepEqual(
      logged.map(({ message }) => message),
      ['replica in the read rotation', 'replica in the read rotation'],
    );
  });

  it('takes a lagging replica out and logs again only when the kind of reason changes', async (t) => {
    const { monitor, replicas, reasons, logged } = setup(t, 1);
    await monitor.probeAll();
    logged.length = 0;
    for (const lag of [7, 8, 9]) {
      replicas[0]!.lagSeconds = lag;
      await monitor.probeAll();
    }
    assert.deepEqual(reasons(), ['lag 9s over 5s']);
    assert.deepEqual(
      logged.map(({ level, message }) => `${level} ${message}`),
      ['warn replica out of the read rotation'],
    );
    replicas[0]!.lagSeconds = 1;
    await monitor.probeAll();
    assert.deepEqual(reasons(), ['healthy']);
    assert.equal(logged.length, 2);
  });

  it('measures lag from the heartbeat on the primary’s clock, over Seconds_Behind_Master', async (t) => {
    const { monitor, clock, primary, replicas, reasons } = setup(t, 1);
    // An idle primary: Seconds_Behind_Master says 0, the heartbeat the replica holds is 7.5 s old.
    primary.heartbeatMs = clock.now - 500;
    replicas[0]!.heartbeatMs = clock.now - 7_500;
    await monitor.probeAll();
    assert.deepEqual(reasons(), ['lag 7s over 5s']);
    assert.equal(monitor.replicas()[0]!.lagSource, 'heartbeat');
    replicas[0]!.heartbeatMs = primary.heartbeatMs;
    await monitor.probeAll();
    assert.deepEqual(reasons(), ['healthy']);
    assert.equal(monitor.replicas()[0]!.lagSeconds, 0);
  });

  it('serves from a replica without the replication-status grant on the heartbeat alone', async (t) => {
    const { monitor, clock, primary, replicas, reasons } = setup(t, 1);
    replicas[0]!.statusDenied = true;
    await monitor.probeAll();
    assert.deepEqual(reasons(), ['replication lag unknown (no heartbeat yet)']);
    primary.heartbeatMs = clock.now;
    replicas[0]!.heartbeatMs = clock.now;
    await monitor.probeAll();
    assert.deepEqual(reasons(), ['healthy']);
    assert.equal(monitor.replicas()[0]!.lagSource, 'heartbeat');
    // Its apply stops: the primary's heartbeat moves on, the replica's copy does not.
    for (let second = 1; second <= 7; second += 1) {
      clock.now += 1000;
      primary.heartbeatMs = clock.now;
      await monitor.probeAll();
    }
    assert.deepEqual(reasons(), ['lag 7s over 5s']);
  });

  it('keeps the last heartbeat figure while nobody writes the heartbeat', async (t) => {
    const { monitor, clock, primary, replicas, reasons } = setup(t, 1);
    replicas[0]!.statusDenied = true;
    primary.heartbeatMs = clock.now;
    replicas[0]!.heartbeatMs = clock.now - 2_000;
    await monitor.probeAll();
    assert.deepEqual(reasons(), ['healthy']);
    // The writer stops (frozen primary): lag is unknown, not growing.
    clock.now += 60_000;
    await monitor.probeAll();
    assert.deepEqual(reasons(), ['healthy']);
    assert.equal(monitor.replicas()[0]!.lagSeconds, 2);
    assert.equal(monitor.replicas()[0]!.lagSource, 'last-heartbeat');
    primary.down = { code: 'ETIMEDOUT' };
    await monitor.probeAll();
    assert.deepEqual(reasons(), ['healthy']);
    assert.equal(monitor.replicas()[0]!.lagSource, 'last-heartbeat');
  });

  it('names an access denial on the replica, not a probe failure, as access denied', async (t) => {
    const { monitor, replicas, reasons, logged } = setup(t, 1);
    replicas[0]!.down = { code: 'ER_SPECIFIC_ACCESS_DENIED_ERROR' };
    await monitor.probeAll();
    assert.match(reasons()[0]!, /^access denied: .*GRANT SLAVE MONITOR.*REPLICATION CLIENT/);
    const warning = logged.find(({ level }) => level === 'warn');
    assert.match(JSON.stringify(warning?.details), /SLAVE MONITOR/);
  });

  it('keeps out a replica whose schema lacks this release’s newest migration', async (t) => {
    const { monitor, replicas, reasons } = setup(t, 1);
    replicas[0]!.migrations = ['0001-older'];
    await monitor.probeAll();
    assert.match(reasons()[0]!, /schema lacks migration 0009-newest/);
  });

  it('ends the probe of a silent server within the probe timeout: twice in a row, it counts as down', async (t) => {
    const { monitor, primary, replicas, reasons } = setup(t);
    await monitor.probeAll();
    primary.silent = true;
    replicas[1]!.silent = true;
    await monitor.probeAll();
    // One unanswered probe of a healthy replica is forgiven (a slow, lossy link); two are not.
    assert.deepEqual(reasons(), ['healthy', 'healthy']);
    await monitor.probeAll();
    assert.equal(monitor.primary().healthy, false);
    assert.equal(monitor.primary().reason, 'unreachable: ERR_DB_SERVER_SILENT');
    assert.deepEqual(reasons(), ['healthy', 'unreachable: ERR_DB_SERVER_SILENT']);
  });

  it('counts a replica retrying its primary as fresh only while the primary is down', async (t) => {
    const { monitor, primary, replicas, reasons, events } = setup(t, 1);
    replicas[0]!.io = 'connecting';
    replicas[0]!.lagSeconds = null;
    await monitor.probeAll();
    assert.deepEqual(reasons(), ['replication I/O thread cannot reach the primary']);
    primary.down = { code: 'ECONNREFUSED' };
    await monitor.probeAll();
    assert.deepEqual(reasons(), ['healthy']);
    assert.deepEqual(monitor.primary().reason, 'unreachable: ECONNREFUSED');
    // What the last probe that reached it saw is kept: it comes back with the same schema.
    assert.equal(monitor.primary().schemaCurrent, true);
    assert.equal(events.primaryReachable.at(-1), false);
  });
});

describe('replica router', () => {
  it('reads round-robin from healthy replicas', async (t) => {
    const { monitor, router } = setup(t);
    await monitor.probeAll();
    const servers = [];
    for (let index = 0; index < 4; index += 1) servers.push(await router.read(whichServer));
    assert.deepEqual(servers, ['replica1:3306', 'replica2:3306', 'replica1:3306', 'replica2:3306']);
  });

  it('takes a replica whose read fails out and reads the next one, then the primary', async (t) => {
    const { monitor, router, replicas, reasons, events } = setup(t);
    await monitor.probeAll();
    replicas[0]!.down = { code: 'ECONNRESET' };
    const failing = (executor: DatabaseExecutor) =>
      executor === replicas[0]!.executor
        ? Promise.reject(Object.assign(new Error('gone'), { code: 'ECONNRESET' }))
        : whichServer(executor);
    assert.equal(await router.read(failing), 'replica2:3306');
    assert.deepEqual(reasons(), ['read failed: ECONNRESET', 'healthy']);
    replicas[1]!.lagSeconds = 60;
    await monitor.probeAll();
    assert.equal(await router.read(failing), 'primary');
    assert.equal(events.routedToPrimary, 1);
  });

  it('moves a read off a replica that went silent, and takes it out', async (t) => {
    const { monitor, router, replicas, reasons } = setup(t);
    await monitor.probeAll();
    replicas[0]!.silent = true;
    const hangsOnSilent = (executor: DatabaseExecutor) =>
      executor === replicas[0]!.executor
        ? new Promise<string>(() => undefined)
        : whichServer(executor);
    assert.equal(await router.read(hangsOnSilent), 'replica2:3306');
    assert.deepEqual(reasons(), ['read failed: ERR_DB_SERVER_SILENT', 'healthy']);
  });

  it('waits for a long read on a replica that still answers probes', async (t) => {
    const { monitor, router } = setup(t);
    await monitor.probeAll();
    const long = (executor: DatabaseExecutor) =>
      new Promise<string>((resolve) =>
        setTimeout(() => resolve(whichServer(executor)), FIRST_RESPONSE_MS * 4),
      );
    assert.equal(await router.read(long), 'replica1:3306');
    assert.deepEqual(
      monitor.replicas().map((replica) => replica.healthy),
      [true, true],
    );
  });

  it('still tries a primary its probe saw down, and says why when it cannot serve', async (t) => {
    const { monitor, router, primary } = setup(t, 0);
    primary.down = { code: 'ECONNREFUSED' };
    await monitor.probeAll();
    // One lost probe must not fail every read: the primary answers again.
    primary.down = undefined;
    assert.equal(await router.read(whichServer), 'primary');
    primary.down = { code: 'ECONNREFUSED' };
    const refused = (executor: DatabaseExecutor) =>
      executor === primary.executor
        ? Promise.reject(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' }))
        : whichServer(executor);
    await assert.rejects(
      router.read(refused),
      (error: unknown) =>
        error instanceof AppError &&
        error.code === 'ERR_DB_UNAVAILABLE' &&
        /the primary is unreachable/.test(error.message),
    );
  });

  it('does not read a primary whose schema is older than this release', async (t) => {
    const { monitor, router, primary } = setup(t, 0);
    primary.migrations = [];
    await monitor.probeAll();
    await assert.rejects(router.read(whichServer), /schema is older than this release/);
  });

  it('waits for replicas after a write; one that misses the deadline leaves until it catches up', async (t) => {
    const { monitor, router, primary, replicas, reasons } = setup(t);
    await monitor.probeAll();
    primary.applied = 5;
    replicas[0]!.applied = 5;
    replicas[1]!.applied = 4;
    await router.waitForReplicas();
    assert.deepEqual(reasons(), ['healthy', 'did not apply the last write within 3000 ms']);
    await monitor.probeAll();
    assert.deepEqual(reasons(), ['healthy', 'has not applied the last write yet']);
    replicas[1]!.applied = 5;
    await monitor.probeAll();
    assert.deepEqual(reasons(), ['healthy', 'healthy']);
  });

  it('takes every replica out when the position after a write cannot be read', async (t) => {
    const { monitor, router, primary, reasons } = setup(t);
    await monitor.probeAll();
    primary.down = { code: 'PROTOCOL_CONNECTION_LOST' };
    await router.waitForReplicas();
    assert.deepEqual(reasons(), [
      'the last write could not be confirmed on it',
      'the last write could not be confirmed on it',
    ]);
  });
});
