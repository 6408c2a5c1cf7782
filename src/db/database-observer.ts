import type { LagSource } from './database.js';

/**
 * What the database layer reports while it works; metrics implement it. The db module calls
 * these and never knows about Prometheus. `target` is `primary` or a replica's name.
 */
export interface DatabaseObserver {
  /** A query finished (or failed) after `seconds`. */
  queryFinished(target: string, operation: 'read' | 'write', seconds: number): void;
  /** A query on `target` failed (the driver or the server reported an error). */
  queryFailed(target: string): void;
  /**
   * A replica health check ran. `lagSeconds` is undefined when the replica cannot tell
   * (replication stopped or the replica is unreachable); `lagSource` says where the figure came
   * from.
   */
  replicaChecked(
    replica: string,
    healthy: boolean,
    lagSeconds: number | undefined,
    lagSource?: LagSource,
  ): void;
  /** The primary was probed: reachable or not. */
  primaryChecked(reachable: boolean): void;
  /** Every configured server was asked `@@read_only`: `count` answered writable (1 is healthy). */
  writableServersChecked(count: number): void;
  /** A read went to the primary because no replica was healthy. */
  readRoutedToPrimary(): void;
  /** Connections of `target`'s pool currently checked out. */
  poolConnectionsInUse(target: string, count: number): void;
  /** Snapshot streams held for clients now (each on a connection of its own). */
  streamsInUse(count: number): void;
  /** A stream was refused because MAX_CONCURRENT_STREAMS were running. */
  streamRefused(): void;
}

/** An observer that does nothing: the CLI's one-shot commands and tests that do not look. */
export const IGNORE_DATABASE_EVENTS: DatabaseObserver = {
  queryFinished: () => undefined,
  queryFailed: () => undefined,
  replicaChecked: () => undefined,
  primaryChecked: () => undefined,
  writableServersChecked: () => undefined,
  readRoutedToPrimary: () => undefined,
  poolConnectionsInUse: () => undefined,
  streamsInUse: () => undefined,
  streamRefused: () => undefined,
};
