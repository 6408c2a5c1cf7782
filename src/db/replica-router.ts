import { AppError } from '../errors.js';
import { silentServerCheck } from './answer-or-silence.js';
import type { DatabaseExecutor, ReadQuery } from './database.js';
import { IGNORE_DATABASE_EVENTS, type DatabaseObserver } from './database-observer.js';
import { isDatabaseFailure } from './is-database-failure.js';
import {
  describeError,
  type MonitoredReplica,
  type ReplicationSql,
  type TopologyLogger,
  type TopologyMonitor,
} from './topology-monitor.js';

export interface ReplicaRouterOptions {
  /** Also says where reads go when no replica can serve (the writer, else the primary). */
  monitor: TopologyMonitor;
  replication: ReplicationSql;
  waitMs: number;
  /** A replica read unanswered this long has its server probed (DB_FIRST_RESPONSE_TIMEOUT_MS). */
  firstResponseTimeoutMs?: number;
  /** How long that probe may wait (DB_PROBE_TIMEOUT_MS). */
  probeTimeoutMs?: number;
  logger?: TopologyLogger | undefined;
  observer?: DatabaseObserver;
  now?: () => number;
}

/** Where a read goes: a healthy replica, else the primary when this release can read it. */
export interface ReadSource {
  /** `primary`, or the replica's host:port. */
  name: string;
  executor: DatabaseExecutor;
}

export interface ReplicaRouter {
  read<T>(query: ReadQuery<T>): Promise<T>;
  /** Where a read that holds one connection (a snapshot) should go now; throws as `read` does. */
  readSource(): ReadSource;
  /** Healthy replicas, in the order a snapshot tries them. */
  healthyReplicas: () => MonitoredReplica[];
  waitForReplicas(): Promise<void>;
}

/** Longest single GTID wait, so one wait never outlives the driver's query timeout. */
const WAIT_STEP_SECONDS = 1;

/**
 * Routes reads to healthy replicas, round-robin, per the topology monitor; a failed read takes
 * its replica out at once and is retried on the next candidate, then the primary. So does a read
 * left unanswered by a server that then fails a probe too (frozen, partitioned: see
 * answerOrSilence), long before the query timeout. A primary
 * whose schema is older than this release's is never read; when it cannot serve either, the
 * read fails with the reason (ERR_DB_UNAVAILABLE).
 */
export function createReplicaRouter(options: ReplicaRouterOptions): ReplicaRouter {
  const { monitor, replication, logger } = options;
  const observer = options.observer ?? IGNORE_DATABASE_EVENTS;
  const now = options.now ?? Date.now;
  const { firstResponseTimeoutMs = 1000, probeTimeoutMs = 1000 } = options;
  const unlessSilent = silentServerCheck(
    (executor) => replication.ping(executor),
    firstResponseTimeoutMs,
    probeTimeoutMs,
  );
  let turn = 0;

  const healthyReplicas = () => monitor.replicas().filter((replica) => replica.healthy);

  /** Why nothing can serve reads, for a 503 anyone may read (no host names). */
  const noReadableServer = (why: string, cause?: unknown) =>
    new AppError(
      'ERR_DB_UNAVAILABLE',
      monitor.replicas().length === 0
        ? `no database this release can read: ${why}`
        : `no database this release can read: ${why}, and no replica is in the read rotation`,
      { cause },
    );

  const olderSchema = () =>
    noReadableServer(
      "the primary's schema is older than this release's (its migrations have not run)",
    );

  /**
   * Reads `query` on the primary. One its probe saw down is still tried (a single lost probe
   * must not fail every read); if it fails, the answer says why nothing could serve.
   */
  const readPrimary = async <T>(query: ReadQuery<T>): Promise<T> => {
    if (monitor.primary().schemaCurrent === false) {
      throw olderSchema();
    }
    try {
      return await query(monitor.fallbackReadTarget().executor);
    } catch (error) {
      if (monitor.primary().healthy || !isDatabaseFailure(error)) throw error;
      throw noReadableServer('the primary is unreachable', error);
    }
  };

  return {
    async read(query) {
      const healthy = healthyReplicas();
      if (healthy.length > 0) {
        const first = turn++ % healthy.length;
        const order = [...healthy.slice(first), ...healthy.slice(0, first)];
        for (const replica of order.slice(0, 2)) {
          try {
            return await unlessSilent(query(replica.executor), replica.executor, replica.name);
          } catch (error) {
            monitor.takeOut(replica, `read failed: ${describeError(error)}`);
          }
        }
      }
      if (monitor.replicas().length > 0) observer.readRoutedToPrimary();
      return readPrimary(query);
    },

    readSource() {
      const replica = healthyReplicas()[0];
      if (replica !== undefined) return replica;
      if (monitor.primary().schemaCurrent === false) {
        throw noReadableServer(
          "the primary's schema is older than this release's (its migrations have not run)",
        );
      }
      return monitor.fallbackReadTarget();
    },

    healthyReplicas,

    async waitForReplicas() {
      const replicas = monitor.replicas();
      if (replicas.length === 0) return;
      let position: string;
      try {
        // The server the write went to: a promoted replica's position after a failover.
        position = await replication.primaryPosition(monitor.fallbackReadTarget().executor);
      } catch (error) {
        // The write has committed: failing the caller now would invite a duplicating retry.
        // Without the position no replica can be confirmed, so none serves reads until the
        // probes see the primary and replicas again.
        logger?.warn({ err: error }, 'cannot read the primary position after a write');
        for (const replica of replicas) {
          monitor.takeOut(replica, 'the last write could not be confirmed on it');
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
            let reason = `did not apply the last write within ${options.waitMs} ms`;
            try {
              for (;;) {
                const seconds = Math.max(0, Math.min(WAIT_STEP_SECONDS, (deadline - now()) / 1000));
                // A silent replica would hold the write's answer for DB_QUERY_TIMEOUT_MS; one
                // that is merely waiting for the position answers the probe and is waited for.
                const applied = await unlessSilent(
                  replication.waitForPosition(replica.executor, position, seconds),
                  replica.executor,
                  replica.name,
                );
                if (applied) return;
                if (now() >= deadline) break;
              }
            } catch (error) {
              logger?.warn({ replica: replica.name, err: error }, 'waiting for replication failed');
              reason = `waiting for the last write failed: ${describeError(error)}`;
            }
            replica.requiredPosition = position;
            monitor.takeOut(replica, reason);
          }),
      );
    },
  };
}
