import type { DatabaseExecutor, LagSource, ReplicaState, TargetState } from './database.js';
import { IGNORE_DATABASE_EVENTS, type DatabaseObserver } from './database-observer.js';
import { ServerSilentError, withinMs } from './answer-or-silence.js';

/** The questions the monitor and the router ask a server, in each server flavor's SQL. */
export interface ReplicationSql {
  /** undefined when the server is not configured as a replica. */
  replicaStatus(replica: DatabaseExecutor): Promise<
    | {
        /** `connecting`: the I/O thread is retrying its connection to the primary. */
        ioState: 'running' | 'connecting' | 'stopped';
        sqlRunning: boolean;
        lagSeconds: number | null;
      }
    | undefined
  >;
  /**
   * The newest replication heartbeat the server holds (unix ms on the primary's clock when it
   * was written; null when there is none) and the server's own clock (unix ms).
   */
  heartbeat(executor: DatabaseExecutor): Promise<{ beatAtMs: number | null; nowMs: number }>;
  /**
   * Whether the server refuses writes (`@@GLOBAL.read_only`): the writer is the one configured
   * server that does not. Absent: the configured primary is taken as writable and every
   * replica as read-only, without asking.
   */
  readOnly?(executor: DatabaseExecutor): Promise<boolean>;
  /** Throws when the server cannot answer a trivial query. */
  ping(executor: DatabaseExecutor): Promise<void>;
  /** Whether the server's schema has had `migration` applied (false when it has none at all). */
  hasMigration(executor: DatabaseExecutor, migration: string): Promise<boolean>;
  /** The primary's current replication position (a GTID set). */
  primaryPosition(primary: DatabaseExecutor): Promise<string>;
  /** Waits up to `seconds` for the replica to apply `position`; false on timeout. */
  waitForPosition(replica: DatabaseExecutor, position: string, seconds: number): Promise<boolean>;
}

export interface TopologyLogger {
  info(details: object, message: string): void;
  warn(details: object, message: string): void;
}

/** A replica as the monitor keeps it: its state, and what it must show before it serves again. */
export interface MonitoredReplica extends ReplicaState {
  executor: DatabaseExecutor;
  /** A write this replica failed to apply in time: it stays out until it has. */
  requiredPosition: string | undefined;
  /** The last lag the heartbeat measured: the figure kept while no heartbeat is written. */
  heartbeatLagSeconds: number | null;
}

/** A server writes may go to: the configured primary (`primary`) or a promoted replica. */
export interface WriteTarget {
  /** `primary` for the configured primary, else the promoted replica's host:port. */
  name: string;
  executor: DatabaseExecutor;
}

export interface TopologyMonitorOptions {
  primary: DatabaseExecutor;
  /** The configured primary's host:port: its name while it serves reads as a replica. */
  primaryName?: string;
  replicas: { name: string; executor: DatabaseExecutor }[];
  replication: ReplicationSql;
  /** The newest migration this release knows: a server without it has an older schema. */
  schemaMigration: string;
  maxLagSeconds: number;
  probeIntervalMs: number;
  /** Longest one probe statement waits (DB_PROBE_TIMEOUT_MS): a silent server counts as down. */
  probeTimeoutMs?: number;
  /**
   * A primary heartbeat older than this (on the primary's clock) means nobody is writing it:
   * heartbeat lag is then unknown, not growing.
   */
  heartbeatStaleMs: number;
  logger?: TopologyLogger | undefined;
  observer?: DatabaseObserver;
  /** Called after every round of probes (e.g. to report pool use). */
  afterProbe?: () => void;
  now?: () => number;
}

/**
 * What this instance knows of its database servers: the primary (reachable, schema current)
 * and each replica (reachable, replicating, lag, schema current), probed in the background
 * and told of failed reads and missed replication waits. Every change of a server's state is
 * logged once, with its reason.
 */
export interface TopologyMonitor {
  /** The write target (the one writable server) as the probes see it. */
  primary(): TargetState;
  /**
   * Where writes go now: the one writable configured server; undefined when writes must be
   * refused (two or more writable: split brain; every reachable one read-only). Before the
   * first probe, and while the last writer is unreachable, the last writer (the configured
   * primary at first): a write then fails or succeeds on its own.
   */
  writeTarget(): WriteTarget | undefined;
  /** Where a read goes when no replica can serve: the write target, else the configured primary. */
  fallbackReadTarget(): WriteTarget;
  /**
   * The live records of the servers that serve reads (the router reads them on every request):
   * the configured replicas but a promoted one, and the configured primary once it is
   * read-only while another server takes the writes.
   */
  replicas(): readonly MonitoredReplica[];
  /** Takes a replica out of the read rotation now (a failed read, a missed wait). */
  takeOut(replica: MonitoredReplica, reason: string): void;
  /** Probes every server now (the background loop does this every probe interval). */
  probeAll(): Promise<void>;
  stop(): Promise<void>;
}

export function createTopologyMonitor(options: TopologyMonitorOptions): TopologyMonitor {
  const { primary, logger, schemaMigration } = options;
  const replication = boundedProbes(options.replication, options.probeTimeoutMs ?? 1000);
  const observer = options.observer ?? IGNORE_DATABASE_EVENTS;
  const now = options.now ?? Date.now;
  const record = (name: string, executor: DatabaseExecutor): MonitoredReplica => ({
    name,
    executor,
    healthy: false,
    reason: 'not probed yet',
    lagSeconds: null,
    lagSource: undefined,
    probedAt: null,
    requiredPosition: undefined,
    heartbeatLagSeconds: null,
  });
  /**
   * Every configured server, each a writer candidate (as ProxySQL's replication hostgroups
   * decide: the writer is the one with read_only=OFF). `writable` is what the last probe of
   * `@@read_only` said; undefined while it did not answer. `probeError`: that probe's failure,
   * this round (so a silent server costs one probe timeout a round, not one per question).
   */
  interface Server {
    target: WriteTarget;
    record: MonitoredReplica;
    configuredPrimary: boolean;
    writable: boolean | undefined;
    probeError: Error | undefined;
  }
  const primaryServer: Server = {
    target: { name: 'primary', executor: primary },
    record: record(options.primaryName ?? 'primary', primary),
    configuredPrimary: true,
    writable: true,
    probeError: undefined,
  };
  const servers: Server[] = [
    primaryServer,
    ...options.replicas.map(({ name, executor }) => ({
      target: { name, executor },
      record: record(name, executor),
      configuredPrimary: false,
      writable: false,
      probeError: undefined,
    })),
  ];
  /** Where writes go; undefined while refused (see `refusal`). */
  let writer: Server | undefined = primaryServer;
  /** The last server writes went to: kept as the writer while it does not answer. */
  let lastWriter: Server = primaryServer;
  /** Why writes are refused while `writer` is undefined. */
  let refusal: string | undefined;
  let writers: string[] = [];
  /** Servers that serve reads: every one but the writer; the configured primary once read-only. */
  const readers = () =>
    servers.filter(
      (server) => server !== writer && (!server.configuredPrimary || server.writable === false),
    );
  /**
   * The primary's clock and its newest heartbeat as the last primary probe read them, while the
   * heartbeat is fresh (someone writes it); undefined otherwise. `localMs`: this process's
   * clock at that read, so the primary's clock can be carried forward by elapsed time alone.
   */
  let primaryClock: { nowMs: number; localMs: number } | undefined;
  const primaryState: TargetState = {
    healthy: true,
    reason: undefined,
    schemaCurrent: undefined,
    probedAt: null,
    writer: 'primary',
    writers: [],
  };
  /** Healthy replicas whose last probe went unanswered (see probeReplica). */
  const silentOnce = new WeakSet<MonitoredReplica>();
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let probing: Promise<void> = Promise.resolve();

  const setReplicaState = (
    replica: MonitoredReplica,
    reason: string | undefined,
    lagSeconds: number | null,
    lagSource: LagSource | undefined = replica.lagSource,
  ) => {
    // Logged when the reason changes in kind, not when only a lag figure moves.
    if (gist(reason) !== gist(replica.reason)) {
      if (reason === undefined) {
        logger?.info({ replica: replica.name, lagSeconds }, 'replica in the read rotation');
      } else logger?.warn({ replica: replica.name, reason }, 'replica out of the read rotation');
    }
    replica.healthy = reason === undefined;
    replica.reason = reason;
    replica.lagSeconds = lagSeconds;
    replica.lagSource = lagSeconds === null ? undefined : lagSource;
    observer.replicaChecked(
      replica.name,
      replica.healthy,
      lagSeconds ?? undefined,
      replica.lagSource,
    );
  };

  /**
   * The replica's lag from the heartbeat it has applied, measured on the primary's clock: the
   * primary's time now (its clock as last read, carried forward by the time elapsed here) minus
   * the primary's time when the newest heartbeat the replica holds was written. Whole seconds,
   * rounded down, like Seconds_Behind_Master. Undefined when no heartbeat is being written.
   */
  const heartbeatLag = async (replica: MonitoredReplica): Promise<number | null | undefined> => {
    if (primaryClock === undefined) return undefined;
    const { beatAtMs } = await replication.heartbeat(replica.executor);
    if (beatAtMs === null) return null;
    const primaryNowMs = primaryClock.nowMs + (now() - primaryClock.localMs);
    return Math.max(0, Math.floor((primaryNowMs - beatAtMs) / 1000));
  };

  const schemaProblem = async (executor: DatabaseExecutor) =>
    (await replication.hasMigration(executor, schemaMigration))
      ? undefined
      : `its schema lacks migration ${schemaMigration}, which this release reads (migrations run on the primary)`;

  const probeReplica = async (
    replica: MonitoredReplica,
    probeError: Error | undefined,
  ): Promise<void> => {
    let reason: string | undefined;
    let lag: number | null = null;
    let source: LagSource | undefined;
    try {
      if (probeError !== undefined) throw probeError;
      // Replication status needs SLAVE MONITOR (REPLICATION CLIENT on MySQL); without it the
      // heartbeat alone decides.
      let statusGranted = true;
      const status = await replication.replicaStatus(replica.executor).catch((error: unknown) => {
        if ((error as { code?: unknown }).code !== 'ER_SPECIFIC_ACCESS_DENIED_ERROR') throw error;
        statusGranted = false;
        return undefined;
      });
      const beatLag = await heartbeatLag(replica);
      if (typeof beatLag === 'number') {
        lag = beatLag;
        source = 'heartbeat';
        replica.heartbeatLagSeconds = beatLag;
      } else if (status?.lagSeconds !== null && status?.lagSeconds !== undefined) {
        lag = status.lagSeconds;
        source = 'replica-status';
      } else if (beatLag === undefined && replica.heartbeatLagSeconds !== null) {
        // Nobody writes the heartbeat (the primary is unreachable or frozen): the lag is
        // unknown, not growing, so the replica keeps its last measured figure.
        lag = replica.heartbeatLagSeconds;
        source = 'last-heartbeat';
      }
      // A replica whose I/O thread is retrying because the primary is down is as fresh as any
      // copy can be, and is exactly what reads need then; while the primary is up, the same
      // state means it is cut off and falling behind.
      const primaryDown = !primaryState.healthy;
      if (!statusGranted) {
        if (lag === null && !primaryDown) reason = 'replication lag unknown (no heartbeat yet)';
        else if (lag !== null && lag > options.maxLagSeconds)
          reason = `lag ${lag}s over ${options.maxLagSeconds}s`;
        else reason = await schemaProblem(replica.executor);
      } else if (status === undefined) reason = 'not configured as a replica';
      else if (!status.sqlRunning) reason = 'replication SQL thread not running';
      else if (status.ioState === 'stopped') reason = 'replication I/O thread not running';
      else if (status.ioState === 'connecting' && !primaryDown) {
        reason = 'replication I/O thread cannot reach the primary';
      } else if (lag === null && !primaryDown) reason = 'replication lag unknown';
      else if (lag !== null && lag > options.maxLagSeconds)
        reason = `lag ${lag}s over ${options.maxLagSeconds}s`;
      else reason = await schemaProblem(replica.executor);
      if (reason === undefined && replica.requiredPosition !== undefined) {
        const caughtUp = await replication.waitForPosition(
          replica.executor,
          replica.requiredPosition,
          0,
        );
        if (caughtUp) replica.requiredPosition = undefined;
        else reason = 'has not applied the last write yet';
      }
    } catch (error) {
      reason = describeFailure(error);
      // One unanswered probe on a slow, lossy link (a lost SYN alone costs 1 s) must not take a
      // healthy replica out: the second in a row does. A read it leaves unanswered still does
      // at once (the router's own check).
      if (error instanceof ServerSilentError && replica.healthy && !silentOnce.has(replica)) {
        silentOnce.add(replica);
        replica.probedAt = now();
        return;
      }
    }
    silentOnce.delete(replica);
    if (!stopped) setReplicaState(replica, reason, lag, source);
    replica.probedAt = now();
  };

  /** Asks every server whether it is read-only; a server that does not answer is no writer. */
  const probeReadOnly = async (server: Server) => {
    server.probeError = undefined;
    if (replication.readOnly === undefined) {
      server.writable = server.configuredPrimary;
      return;
    }
    try {
      server.writable = !(await replication.readOnly(server.target.executor));
    } catch (error) {
      server.writable = undefined;
      server.probeError = error instanceof Error ? error : new Error(String(error));
    }
  };

  /**
   * The writer: the one writable server. Two or more: split brain, writes refused (writing to
   * either would fork the data). None, while the last writer does not answer: still that one
   * (one lost probe must not refuse every write; a write to a dead server fails on its own).
   * None, with the last writer read-only: writes refused until one is made writable.
   */
  const chooseWriter = () => {
    const writable = servers.filter((server) => server.writable === true);
    const previous = writer;
    const previousRefusal = refusal;
    writers = writable.map((server) => server.record.name);
    observer.writableServersChecked(writable.length);
    if (writable.length === 1) {
      writer = writable[0]!;
      refusal = undefined;
    } else if (writable.length > 1) {
      writer = undefined;
      refusal = `split brain: ${writable.length} servers are writable (read_only=OFF): ${writers.join(', ')}; make every one but the primary read-only`;
    } else if (lastWriter.writable === undefined) {
      writer = lastWriter;
      refusal = undefined;
    } else {
      writer = undefined;
      refusal = `no server is writable: ${lastWriter.record.name} is read-only (read_only=ON) and no other server was made writable`;
    }
    if (writer !== undefined) lastWriter = writer;
    if (writer !== previous || gist(refusal) !== gist(previousRefusal)) {
      if (writer === undefined && writable.length > 1) {
        logger?.warn({ writers }, 'database split brain: writes refused on every server');
      } else if (writer === undefined) {
        logger?.warn({ reason: refusal }, 'no writable database server: writes answer 503');
      } else {
        logger?.info(
          { writer: writer.record.name, configuredPrimary: writer.configuredPrimary },
          writer.configuredPrimary
            ? 'writes go to the configured primary'
            : 'writes go to a promoted replica (the configured primary is read-only or unreachable)',
        );
      }
    }
    // A new writer's schema is its own: unknown until its probe below reads it.
    if (writer !== undefined && writer !== previous && previous !== undefined) {
      primaryState.schemaCurrent = undefined;
    }
  };

  const probePrimary = async () => {
    let reason: string | undefined;
    // Kept while it is down: a primary that comes back has the schema it had, so writes need
    // not wait a probe round for it; one never seen up stays unknown until a probe tells.
    let schemaCurrent = primaryState.schemaCurrent;
    const target = writer;
    try {
      if (target === undefined) throw new WritesRefused(refusal ?? 'writes refused');
      if (target.probeError !== undefined) throw target.probeError;
      const localMs = now();
      const { beatAtMs, nowMs } = await replication.heartbeat(target.target.executor);
      primaryClock =
        beatAtMs !== null && nowMs - beatAtMs <= options.heartbeatStaleMs
          ? { nowMs, localMs }
          : undefined;
      schemaCurrent = (await schemaProblem(target.target.executor)) === undefined;
    } catch (error) {
      primaryClock = undefined;
      reason = error instanceof WritesRefused ? error.message : describeFailure(error);
    }
    if (gist(reason) !== gist(primaryState.reason) && !(target === undefined)) {
      if (reason === undefined) logger?.info({ writer: target.record.name }, 'primary reachable');
      else logger?.warn({ reason }, 'primary unreachable: writes answer 503');
    }
    primaryState.healthy = reason === undefined;
    primaryState.reason = reason;
    primaryState.schemaCurrent = schemaCurrent;
    primaryState.probedAt = now();
    primaryState.writer = target?.target.name;
    primaryState.writers = writers;
    observer.primaryChecked(primaryState.healthy);
  };

  // Read-only first: who the writer is decides what every other probe asks. Then the writer:
  // a replica's verdict depends on whether the primary is reachable.
  const probeAll = async () => {
    await Promise.all(servers.map(probeReadOnly));
    chooseWriter();
    await probePrimary();
    await Promise.all(
      servers
        .filter((server) => readers().includes(server))
        .map((server) => probeReplica(server.record, server.probeError)),
    );
    options.afterProbe?.();
  };
  const loop = () => {
    probing = probeAll().finally(() => {
      if (!stopped) timer = setTimeout(loop, options.probeIntervalMs).unref();
    });
  };
  // Always: with no replicas the loop still keeps the primary's state (and pool use) current.
  loop();

  return {
    primary: () => ({ ...primaryState, writers: [...writers] }),
    writeTarget: () => writer?.target,
    fallbackReadTarget: () => (writer ?? primaryServer).target,
    replicas: () => readers().map((server) => server.record),
    takeOut: (replica, reason) => setReplicaState(replica, reason, replica.lagSeconds),
    probeAll,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await probing;
    },
  };
}

/**
 * Every probe statement bounded: a frozen or partitioned server answers nothing and resets
 * nothing, and must not hold a probe round (the primary's included) for the query timeout.
 */
function boundedProbes(replication: ReplicationSql, timeoutMs: number): ReplicationSql {
  return {
    replicaStatus: (replica) => withinMs(replication.replicaStatus(replica), timeoutMs, 'probe'),
    heartbeat: (executor) => withinMs(replication.heartbeat(executor), timeoutMs, 'probe'),
    ping: (executor) => withinMs(replication.ping(executor), timeoutMs, 'probe'),
    ...(replication.readOnly !== undefined && {
      readOnly: (executor: DatabaseExecutor) =>
        withinMs(replication.readOnly!(executor), timeoutMs, 'probe'),
    }),
    hasMigration: (executor, migration) =>
      withinMs(replication.hasMigration(executor, migration), timeoutMs, 'probe'),
    primaryPosition: (executor) =>
      withinMs(replication.primaryPosition(executor), timeoutMs, 'probe'),
    // Waits for up to `seconds` by design: the bound is on top of that.
    waitForPosition: (replica, position, seconds) =>
      withinMs(
        replication.waitForPosition(replica, position, seconds),
        timeoutMs + seconds * 1000,
        'probe',
      ),
  };
}

/** Why writes are refused while no single server is writable (not a probe failure). */
class WritesRefused extends Error {}

/** A reason with its figures masked: two reasons of the same kind compare equal. */
function gist(reason: string | undefined): string | undefined {
  return reason?.replace(/\d+(\.\d+)?/g, '#');
}

/** Why a probe failed, in words an operator can act on; never credentials. */
function describeFailure(error: unknown): string {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (code === 'ER_SPECIFIC_ACCESS_DENIED_ERROR') {
    return 'access denied: the application account may not read replication status (GRANT SLAVE MONITOR ON *.* on MariaDB, REPLICATION CLIENT on MySQL)';
  }
  if (code === 'ER_ACCESS_DENIED_ERROR' || code === 'ER_DBACCESS_DENIED_ERROR') {
    return `access denied: ${describeError(error)}`;
  }
  return `unreachable: ${describeError(error)}`;
}

/** A short, credential-free description of a driver error. */
export function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' ? code : error.message.split('\n')[0]!.slice(0, 200);
  }
  return String(error);
}
