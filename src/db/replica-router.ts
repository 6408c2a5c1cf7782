import type { DatabaseExecutor, ReadQuery, ReplicaState, TargetState } from './database.js';
import { IGNORE_DATABASE_EVENTS, type DatabaseObserver } from './database-observer.js';

/** The replication questions a router asks, answered in each server flavor's SQL. */
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
  /** Throws when the server cannot answer a trivial query. */
  ping(executor: DatabaseExecutor): Promise<void>;
  /** The primary's current replication position (a GTID set). */
  primaryPosition(primary: DatabaseExecutor): Promise<string>;
  /** Waits up to `seconds` for the replica to apply `position`; false on timeout. */
  waitForPosition(replica: DatabaseExecutor, position: string, seconds: number): Promise<boolean>;
}

export interface RouterLogger {
  info(details: object, message: string): void;
  warn(details: object, message: string): void;
}

export interface ReplicaRouterOptions {
  primary: DatabaseExecutor;
  replicas: { name: string; executor: DatabaseExecutor }[];
  replication: ReplicationSql;
  maxLagSeconds: number;
  probeIntervalMs: number;
  waitMs: number;
  logger?: RouterLogger | undefined;
  observer?: DatabaseObserver;
  /** Called after every round of probes (e.g. to report pool use). */
  afterProbe?: () => void;
  now?: () => number;
}

export interface ReplicaRouter {
  read<T>(query: ReadQuery<T>): Promise<T>;
  /** The primary as this instance's probes last saw it. */
  primaryState(): TargetState;
  waitForReplicas(): Promise<void>;
  states(): ReplicaState[];
  /** Probes every replica now (the background loop does this on its interval). */
  probeAll(): Promise<void>;
  stop(): Promise<void>;
}

interface Replica extends ReplicaState {
  executor: DatabaseExecutor;
  /** A write this replica failed to apply in time: it stays out until it has. */
  requiredPosition: string | undefined;
}

/** Longest single GTID wait, so one wait never outlives the driver's query timeout. */
const WAIT_STEP_SECONDS = 1;

/**
 * Routes reads to healthy replicas, round-robin, and keeps their health: a background probe
 * (replication threads running, lag within the limit) and every failed read, which takes the
 * replica out at once and retries the read on the next candidate, then the primary.
 */
export function createReplicaRouter(options: ReplicaRouterOptions): ReplicaRouter {
  const { primary, replication, logger } = options;
  const observer = options.observer ?? IGNORE_DATABASE_EVENTS;
  const now = options.now ?? Date.now;
  const replicas: Replica[] = options.replicas.map(({ name, executor }) => ({
    name,
    executor,
    healthy: false,
    reason: 'not probed yet',
    lagSeconds: null,
    probedAt: null,
    requiredPosition: undefined,
  }));
  const primaryState: TargetState = { healthy: true, reason: undefined, probedAt: null };
  let turn = 0;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let probing: Promise<void> = Promise.resolve();

  const setState = (replica: Replica, reason: string | undefined, lagSeconds: number | null) => {
    const healthy = reason === undefined;
    if (healthy !== replica.healthy) {
      if (healthy) logger?.info({ replica: replica.name, lagSeconds }, 'replica back in rotation');
      else logger?.warn({ replica: replica.name, reason }, 'replica out of rotation');
    }
    replica.healthy = healthy;
    replica.reason = reason;
    replica.lagSeconds = lagSeconds;
    observer.replicaChecked(replica.name, healthy, lagSeconds ?? undefined);
  };

  const probe = async (replica: Replica): Promise<void> => {
    let reason: string | undefined;
    let lag: number | null = null;
    try {
      const status = await replication.replicaStatus(replica.executor);
      lag = status?.lagSeconds ?? null;
      // A replica whose I/O thread is retrying because the primary is down is as fresh as any
      // copy can be, and is exactly what reads need then; while the primary is up, the same
      // state means it is cut off and falling behind.
      const primaryDown = !primaryState.healthy;
      if (status === undefined) reason = 'not configured as a replica';
      else if (!status.sqlRunning) reason = 'replication SQL thread not running';
      else if (status.ioState === 'stopped') reason = 'replication I/O thread not running';
      else if (status.ioState === 'connecting' && !primaryDown) {
        reason = 'replication I/O thread cannot reach the primary';
      } else if (lag === null && !primaryDown) reason = 'replication lag unknown';
      else if (lag !== null && lag > options.maxLagSeconds)
        reason = `lag ${lag}s over ${options.maxLagSeconds}s`;
      else if (replica.requiredPosition !== undefined) {
        const caughtUp = await replication.waitForPosition(
          replica.executor,
          replica.requiredPosition,
          0,
        );
        if (caughtUp) replica.requiredPosition = undefined;
        else reason = 'has not applied the last write yet';
      }
    } catch (error) {
      reason = `unreachable: ${describeError(error)}`;
    }
    if (!stopped) setState(replica, reason, lag);
    replica.probedAt = now();
  };

  const probePrimary = async () => {
    try {
      await replication.ping(primary);
      if (!primaryState.healthy) logger?.info({}, 'primary reachable again');
      primaryState.healthy = true;
      primaryState.reason = undefined;
    } catch (error) {
      if (primaryState.healthy)
        logger?.warn({ reason: describeError(error) }, 'primary unreachable');
      primaryState.healthy = false;
      primaryState.reason = `unreachable: ${describeError(error)}`;
    }
    primaryState.probedAt = now();
  };

  // The primary first: a replica's verdict depends on whether the primary is reachable.
  const probeAll = async () => {
    await probePrimary();
    await Promise.all(replicas.map(probe));
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
    async read(query) {
      const healthy = replicas.filter((replica) => replica.healthy);
      if (healthy.length > 0) {
        const first = turn++ % healthy.length;
        const order = [...healthy.slice(first), ...healthy.slice(0, first)];
        for (const replica of order.slice(0, 2)) {
          try {
            return await query(replica.executor);
          } catch (error) {
            setState(replica, `read failed: ${describeError(error)}`, replica.lagSeconds);
          }
        }
      }
      if (replicas.length > 0) observer.readRoutedToPrimary();
      return query(primary);
    },

    async waitForReplicas() {
      if (replicas.length === 0) return;
      let position: string;
      try {
        position = await replication.primaryPosition(primary);
      } catch (error) {
        // The write has committed: failing the caller now would invite a duplicating retry.
        // Without the position no replica can be confirmed, so none serves reads until the
        // probes see the primary and replicas again.
        logger?.warn({ err: error }, 'cannot read the primary position after a write');
        for (const replica of replicas) {
          setState(replica, 'the last write could not be confirmed on it', replica.lagSeconds);
        }
        return;
      }
      // A replica out of rotation (or not probed yet) must show it has this write before it
      // serves reads again, or it would rejoin on its lag alone. The healthy ones are waited
      // for below and get the same rule only if they miss the deadline: marking them at once
      // would let a concurrent probe take them out during every ordinary wait.
      for (const replica of replicas) if (!replica.healthy) replica.requiredPosition = position;
      const deadline = now() + options.waitMs;
      await Promise.all(
        replicas
          .filter((replica) => replica.healthy)
          .map(async (replica) => {
            try {
              for (;;) {
                const seconds = Math.max(0, Math.min(WAIT_STEP_SECONDS, (deadline - now()) / 1000));
                if (await replication.waitForPosition(replica.executor, position, seconds)) return;
                if (now() >= deadline) break;
              }
            } catch (error) {
              logger?.warn({ replica: replica.name, err: error }, 'waiting for replication failed');
            }
            replica.requiredPosition = position;
            setState(
              replica,
              `did not apply the last write within ${options.waitMs} ms`,
              replica.lagSeconds,
            );
          }),
      );
    },

    primaryState: () => ({ ...primaryState }),

    states: () =>
      replicas.map(({ name, healthy, reason, lagSeconds, probedAt }) => ({
        name,
        healthy,
        reason,
        lagSeconds,
        probedAt,
      })),

    probeAll,

    async stop() {
      stopped = true;
      clearTimeout(timer);
      await probing;
    },
  };
}

/** A short, credential-free description of a driver error. */
function describeError(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    return typeof code === 'string' ? code : error.message.split('\n')[0]!.slice(0, 200);
  }
  return String(error);
}
