import { hostname } from 'node:os';
import { sql, type CompiledQuery } from 'kysely';
import type { MysqlConnection } from '../../config/config.js';
import { AppError } from '../../errors.js';
import { beginWriteTransaction, writesUnavailable } from '../begin-write-transaction.js';
import type { Database, DatabaseExecutor, ReplaceOutcome } from '../database.js';
import { IGNORE_DATABASE_EVENTS, type DatabaseObserver } from '../database-observer.js';
import { isConnectionFailure, isDatabaseFailure } from '../is-database-failure.js';
import { ServerSilentError, silentServerCheck, withinMs } from '../answer-or-silence.js';
import { countUsers, insertUsers, readDataVersion } from '../users-repository.js';
import {
  createUsersIndexes,
  createUsersTable,
  dropUsersTableIfExists,
  usersTableExists,
} from '../users-staging-repository.js';
import { LATEST_MIGRATION } from '../migrate-to-latest.js';
import { createReplicaRouter } from '../replica-router.js';
import {
  createTopologyMonitor,
  describeError,
  type MonitoredReplica,
  type TopologyLogger,
} from '../topology-monitor.js';
import { createStreamSlots } from '../stream-slots.js';
import { holdingNamedLock, SWAP_LOCK, WRITE_LOCK } from './mysql/named-lock.js';
import { startHeartbeatWriter } from './mysql/heartbeat-writer.js';
import { createPooledExecutor } from './mysql/pooled-executor.js';
import { createQueryRunnerExecutor } from './mysql/query-runner-executor.js';
import { createMysqlReplicationSql } from './mysql/replication-sql.js';
import { createStagedInserter } from './mysql/staged-inserter.js';
import { createTurnQueue } from './mysql/turn-queue.js';

export type DatabaseLogger = TopologyLogger;

/**
 * Rows per multi-row INSERT: 2,000 rows × 5 columns keeps a statement far below MySQL's
 * 65,535 placeholders and a few hundred KB, well inside the default max_allowed_packet.
 */
const MAX_INSERT_ROWS = 2000;

/** pt-heartbeat's default: the lag figure moves in whole seconds, so a beat a second suffices. */
const HEARTBEAT_INTERVAL_MS = 1000;
/** Three missed beats: nobody is writing the heartbeat, so lag is unknown (not growing). */
const HEARTBEAT_STALE_MS = 3 * HEARTBEAT_INTERVAL_MS;
/** A writer this far behind on the primary is frozen or cut off: another instance takes over. */
const HEARTBEAT_TAKE_OVER_MS = 5 * HEARTBEAT_INTERVAL_MS;

/**
 * Opens pools to the primary and each replica and starts the topology monitor. The observer hears
 * every query (target `primary` or the replica's host:port), every replica check, and pool use.
 */
export function openMysqlDatabase(
  connection: MysqlConnection,
  options: { observer?: DatabaseObserver | undefined; logger?: DatabaseLogger | undefined } = {},
): Database {
  const observer = options.observer ?? IGNORE_DATABASE_EVENTS;
  const targets = [
    { name: 'primary', target: connection.primary },
    ...connection.replicas.map((target) => ({ name: target.name, target })),
  ].map(({ name, target }) => ({
    name,
    ...createPooledExecutor(target, connection, connection.poolSize, name, observer),
    // Streams wait on their clients: a pool of their own, so they never hold the connections
    // ordinary reads and health checks need.
    streamExecutor: createPooledExecutor(
      target,
      connection,
      connection.maxConcurrentStreams,
      name,
      observer,
    ).executor,
  }));
  const [primaryTarget, ...replicaTargets] = targets as [(typeof targets)[0], ...typeof targets];
  const primary = primaryTarget.executor;
  const replicas = replicaTargets.map(({ name, executor }) => ({ name, executor }));
  const streamSources = new Map(
    targets.map(({ name, streamExecutor }) => [name, { name, executor: streamExecutor }]),
  );
  // The configured primary serves reads under its host:port once it is read-only and a
  // promoted replica takes the writes.
  streamSources.set(connection.primary.name, {
    name: connection.primary.name,
    executor: primaryTarget.streamExecutor,
  });
  const streams = createStreamSlots(connection.maxConcurrentStreams, observer);
  const replication = createMysqlReplicationSql();
  const unlessSilent = silentServerCheck(
    (executor) => replication.ping(executor),
    connection.firstResponseTimeoutMs,
    connection.probeTimeoutMs,
  );
  const monitor = createTopologyMonitor({
    observer,
    afterProbe: () => {
      for (const { name, connectionsInUse } of targets)
        observer.poolConnectionsInUse(name, connectionsInUse());
    },
    primary,
    primaryName: connection.primary.name,
    replicas,
    replication,
    schemaMigration: LATEST_MIGRATION,
    maxLagSeconds: connection.maxReplicaLagSeconds,
    probeIntervalMs: connection.replicaProbeIntervalMs,
    probeTimeoutMs: connection.probeTimeoutMs,
    heartbeatStaleMs: HEARTBEAT_STALE_MS,
    logger: options.logger,
  });
  // One connection of its own per server (opened only when it is the writer): the heartbeat
  // lock lives as long as the session that holds it.
  const heartbeatExecutors = new Map(
    [
      { name: 'primary', target: connection.primary },
      ...connection.replicas.map((target) => ({ name: target.name, target })),
    ].map(({ name, target }) => [
      name,
      createPooledExecutor(target, connection, 1, name, IGNORE_DATABASE_EVENTS).executor,
    ]),
  );
  /** Where writes go now; throws why they are refused (split brain, no writable server). */
  const writeTarget = () => {
    const target = monitor.writeTarget();
    if (target !== undefined) return target;
    const { writers = [] } = monitor.primary();
    throw writers.length > 1
      ? new AppError(
          'ERR_DB_SPLIT_BRAIN',
          'more than one database server is writable (split brain): writes are refused on all of them until an operator makes every one but the primary read-only; nothing was written; reads go on',
        )
      : new AppError(
          'ERR_DB_PRIMARY_UNAVAILABLE',
          'no database server is writable (the primary is read-only and no replica was promoted): writes are refused until one is; nothing was written; reads go on',
        );
  };
  const heartbeat = startHeartbeatWriter({
    // Nobody writes it during a split brain: a write to either server would fork the data.
    executor: () => {
      const target = monitor.writeTarget();
      return target === undefined ? undefined : heartbeatExecutors.get(target.name);
    },
    intervalMs: HEARTBEAT_INTERVAL_MS,
    writer: `${hostname()}:${process.pid}`,
    takeOverAfterMs: HEARTBEAT_TAKE_OVER_MS,
    logger: options.logger,
  });
  const router = createReplicaRouter({
    monitor,
    replication,
    waitMs: connection.replicaWaitMs,
    firstResponseTimeoutMs: connection.firstResponseTimeoutMs,
    probeTimeoutMs: connection.probeTimeoutMs,
    observer,
    logger: options.logger,
  });
  const { healthyReplicas } = router;
  /**
   * A healthy replica that has applied everything the primary had once the swap lock was held:
   * a swap renamed on the primary but not yet applied there would wait on the snapshot all the
   * same. Undefined: none (read the primary).
   */
  const caughtUpReplica = async (lockConnection: DatabaseExecutor) => {
    const candidates = healthyReplicas();
    if (candidates.length === 0) return undefined;
    const position = await replication.primaryPosition(lockConnection);
    for (const replica of candidates) {
      const caughtUp = await replication
        .waitForPosition(replica.executor, position, connection.replicaWaitMs / 1000)
        .catch(() => false);
      if (caughtUp) return replica;
    }
    return undefined;
  };
  const primaryUnavailable = () =>
    new AppError(
      'ERR_DB_PRIMARY_UNAVAILABLE',
      'primary database unavailable: writes are refused until it is back; reads go on',
    );
  const backupRunning = () =>
    new AppError(
      'ERR_BACKUP_IN_PROGRESS',
      `another backup (on this or another instance) held the users table for ${lockWaitMs / 1000} s; try again when it ends`,
    );
  let snapshots = 0;
  const { poolSize } = connection;
  // Below the query timeout: a wait that outlasts it would drop the connection instead.
  const lockWaitMs = Math.round(connection.queryTimeoutMs * 0.8);
  const processQueue = createTurnQueue();
  /** `read` in a snapshot on one connection of `source`'s pool: the snapshot is its session's. */
  const snapshotOn = <T>(
    source: { name: string; executor: DatabaseExecutor },
    read: (executor: DatabaseExecutor, source: string) => Promise<T>,
  ) =>
    source.executor
      .connection()
      .execute((connection) => readInSnapshotOn(connection, source.name, read));
  /**
   * `read` in a snapshot on the stream pool of the first read source whose snapshot starts: a
   * replica silent at the start (partitioned or frozen, not yet seen by the probes) is taken out
   * after the first-response check, as `router.read` does, and the next source is tried, instead
   * of waiting DB_QUERY_TIMEOUT_MS. Once the snapshot has started the stream stays on it.
   */
  const streamSnapshotOnAnswering = async <T>(
    read: (executor: DatabaseExecutor, source: string) => Promise<T>,
  ): Promise<T> => {
    for (let attempt = 0; ; attempt += 1) {
      const source = router.readSource();
      const replica = monitor.replicas().find((each) => each.name === source.name);
      const stream = streamSources.get(source.name)!;
      if (replica === undefined || attempt >= 2) return snapshotOn(stream, read);
      let abandoned = false;
      let markStarted: () => void = () => {};
      const started = new Promise<void>((resolve) => (markStarted = resolve));
      const whole = snapshotOn(stream, async (executor, name) => {
        // Given up on while it waited: the next source serves this stream, never both.
        const late = () => new ServerSilentError(`${name}: snapshot started too late`);
        if (abandoned) throw late();
        const version = await readDataVersion(executor);
        if (abandoned) throw late();
        markStarted();
        return readMovable(executor, replica, version, (movable) => read(movable, name));
      });
      try {
        await unlessSilent(
          Promise.race([started, whole.then(() => undefined)]),
          replica.executor,
          source.name,
        );
      } catch (error) {
        if (!(error instanceof ServerSilentError)) throw error;
        abandoned = true;
        whole.catch(() => undefined); // ends at its own connect or query timeout
        monitor.takeOut(replica, `stream snapshot: ${describeError(error)}`);
        continue;
      }
      return whole;
    }
  };
  /**
   * A snapshot showing data `version`, on a replica caught up with the writer or on the writer,
   * opened while holding the swap lock there: a swap's RENAME commits before its version bump,
   * so outside the lock a snapshot could show the new table under the old version. Released by
   * its holder; given up on (and released) after DB_FIRST_RESPONSE_TIMEOUT_MS.
   */
  const snapshotShowing = async (version: number): Promise<MovedSnapshot> => {
    const writer = monitor.fallbackReadTarget().executor;
    const swapping = () => new Error('a table swap is under way');
    const opened = writer.connection().execute((lockConnection) =>
      holdingNamedLock(lockConnection, SWAP_LOCK, connection.probeTimeoutMs, swapping, async () => {
        // Never a replica that is behind: it could be between a swap's RENAME and its bump.
        const source = (await caughtUpReplica(lockConnection)) ?? monitor.fallbackReadTarget();
        return new Promise<MovedSnapshot>((resolve, reject) => {
          let release: () => void = () => undefined;
          const released = new Promise<void>((done) => (release = done));
          snapshotOn(streamSources.get(source.name)!, async (executor) => {
            const shown = await readDataVersion(executor);
            // The table's metadata lock, taken before the swap lock goes: no RENAME now.
            await sql`SELECT 1 FROM users LIMIT 1`.execute(executor);
            const replica = monitor.replicas().find((each) => each.name === source.name);
            resolve({ executor, shown, replica, release });
            await released;
          }).catch(reject);
        });
      }),
    );
    try {
      const moved = await withinMs(opened, connection.firstResponseTimeoutMs, 'moving a stream');
      if (moved.shown === version) return moved;
      moved.release();
      throw new Error(
        `the data changed since the stream's snapshot (version ${version}, now ${moved.shown}): cut rather than mixing two versions`,
      );
    } catch (error) {
      // Opened too late, or showing other data: nobody reads it.
      opened.then(
        (moved) => moved.release(),
        () => undefined,
      );
      throw error;
    }
  };
  /**
   * `read` on `snapshot` (a replica's, showing data `version`), each query bounded by the
   * silent-server check. A page the replica leaves unanswered, or loses the connection on (the
   * server killed or shutting down), takes it out, and the stream moves to another server's
   * snapshot of the same version, where that page is asked again: the same
   * rows, so the client sees no seam. Keyset pages (sorted ones too) carry their cursor in the
   * query, so asking again continues from the last row sent.
   */
  const readMovable = async <T>(
    snapshot: DatabaseExecutor,
    replica: MonitoredReplica,
    version: number,
    read: (executor: DatabaseExecutor) => Promise<T>,
  ): Promise<T> => {
    let current = snapshot;
    let checked: MonitoredReplica | undefined = replica;
    let moved: MovedSnapshot | undefined;
    const run = async (query: CompiledQuery) => {
      const server = checked;
      if (server === undefined) return current.executeQuery(query);
      try {
        return await unlessSilent(current.executeQuery(query), server.executor, server.name);
      } catch (error) {
        if (!(error instanceof ServerSilentError || lostConnection(error))) throw error;
        monitor.takeOut(server, `stream page: ${describeError(error)}`);
        const next = await snapshotShowing(version);
        moved?.release();
        moved = next;
        current = next.executor;
        checked = next.replica;
        return current.executeQuery(query);
      }
    };
    try {
      return await read(createQueryRunnerExecutor(run));
    } finally {
      moved?.release();
    }
  };
  /**
   * `withWriteLock`, also handing `write` the writer's pool (the lock's connection is one of
   * its connections): a replace loads its rows there.
   */
  const withWriteLockOn = async <T>(
    write: (locked: DatabaseExecutor, primary: DatabaseExecutor) => Promise<T>,
  ): Promise<T> => {
    // The one writable server (a promoted replica after a failover); refused outright during a
    // split brain or while every server is read-only.
    const writer = writeTarget().executor;
    const refused = () =>
      // A write queued behind one stuck on a silent primary waited for the primary, not a lock.
      monitor.primary().healthy
        ? new AppError(
            'ERR_WRITE_IN_PROGRESS',
            `another import or restore (on this or another instance) held the write lock for ${lockWaitMs / 1000} s; try again when it ends`,
          )
        : primaryUnavailable();
    // A write needs this release's schema on the primary: one that lands before the start-up
    // migrations (the primary just came back) would build tables the migrations then trip on.
    if (monitor.primary().schemaCurrent !== true) {
      throw monitor.primary().healthy
        ? new AppError(
            'ERR_DB_PRIMARY_UNAVAILABLE',
            "the primary's schema is older than this release: writes wait for its migrations",
          )
        : primaryUnavailable();
    }
    // Writers of this process queue here first, so at most one of its connections waits on
    // GET_LOCK: twenty waiting there would hold the pool the lock's owner needs to load rows.
    const deadline = Date.now() + lockWaitMs;
    const turn = await processQueue.take(lockWaitMs);
    if (turn === undefined) throw refused();
    let locked = false;
    let abandoned = false;
    let lockTaken: () => void = () => undefined;
    const taken = new Promise<void>((resolve) => (lockTaken = resolve));
    try {
      const attempt = writer.connection().execute((connection) =>
        holdingNamedLock(connection, WRITE_LOCK, deadline - Date.now(), refused, () => {
          // Its caller was answered 503 while the primary was silent: write nothing now.
          if (abandoned) throw primaryUnavailable();
          locked = true;
          lockTaken();
          return write(connection, writer);
        }),
      );
      // Until the lock is held nothing is written, so a silent primary can be given up on
      // (DB_FIRST_RESPONSE_TIMEOUT_MS, then a probe) instead of the query timeout; a lock
      // another writer holds is waited for, since the primary answers the probe.
      const lockedOrDone = Promise.race([taken, attempt.then(() => undefined)]);
      await unlessSilent(lockedOrDone, writer, 'primary').catch((error: unknown) => {
        // The attempt's own error is thrown below; a lock taken meanwhile wins: write on.
        if (!(error instanceof ServerSilentError) || locked) return;
        abandoned = true;
        attempt.catch(() => undefined); // ends at its query timeout, having written nothing
        throw primaryUnavailable();
      });
      return await attempt;
    } catch (error) {
      if (!locked && error instanceof AppError) throw error; // the refusal above
      throw writesUnavailable(database, error);
    } finally {
      turn();
    }
  };
  const database: Database = {
    dialect: 'mysql',
    read: (query) => router.read(query),
    activeSnapshots: () => snapshots,
    get write() {
      return monitor.fallbackReadTarget().executor;
    },
    maxInsertRows: MAX_INSERT_ROWS,
    insertUsers,
    async readSnapshot(readInSnapshot, options = {}) {
      snapshots += 1;
      try {
        if (options.holdOffSwaps !== true)
          return await snapshotOn(router.readSource(), readInSnapshot);
        let locking = true;
        try {
          // Swaps run on the writer, so its swap lock is the one to hold.
          const writer = monitor.fallbackReadTarget().executor;
          return await writer.connection().execute((lockConnection) =>
            holdingNamedLock(lockConnection, SWAP_LOCK, lockWaitMs, backupRunning, async () => {
              locking = false;
              const source = await caughtUpReplica(lockConnection);
              // No replica: the lock's own connection (a pool of one has no other to give).
              return source === undefined
                ? readInSnapshotOn(lockConnection, 'primary', readInSnapshot)
                : snapshotOn(source, readInSnapshot);
            }),
          );
        } catch (error) {
          // No swap runs without the primary, so there is nothing to hold off: read anyway.
          if (!locking || !isDatabaseFailure(error)) throw error;
          return await snapshotOn(router.readSource(), readInSnapshot);
        }
      } finally {
        snapshots -= 1;
      }
    },
    streamSnapshot: (readInSnapshot) =>
      streams.run(async () => {
        snapshots += 1;
        try {
          return await streamSnapshotOnAnswering(readInSnapshot);
        } finally {
          snapshots -= 1;
        }
      }),
    withWriteLock: (write) => withWriteLockOn((locked) => write(locked)),
    async replaceUsersTable(load, { ifEmpty, keepPrevious }) {
      const outcome = await withWriteLockOn(async (locked, primary): Promise<ReplaceOutcome> => {
        if (ifEmpty) {
          const rows = await countUsers(locked);
          if (rows > 0) return { replaced: false, rows };
        }
        await dropUsersTableIfExists(locked, 'users_staging');
        await createUsersTable(locked, 'users_staging', UTF8MB4_TABLE_OPTIONS);
        // With one connection in the pool, the lock's own connection loads the rows.
        const stage = createStagedInserter(poolSize > 1 ? primary : locked, poolSize > 2 ? 2 : 1);
        try {
          await load(stage.insert);
          const rows = await stage.finished();
          await createUsersIndexes(locked, 'users_staging');
          // Only this replace's rows: had the lock's connection dropped mid-load (and the lock
          // with it), another writer could have recreated the table under the batches.
          const { rows: found } = await sql<{ staged: number | string }>`
            SELECT COUNT(*) AS staged FROM users_staging`.execute(locked);
          if (Number(found[0]?.staged) !== rows) {
            throw new Error(
              `users_staging holds ${String(found[0]?.staged)} rows, not the ${rows} loaded: the write lock was lost; nothing was swapped in`,
            );
          }
        } catch (error) {
          await stage.finished().catch(() => undefined);
          // Best effort: the next replace drops a leftover staging table anyway.
          await dropUsersTableIfExists(locked, 'users_staging').catch(() => undefined);
          throw error;
        }
        const hasUsers = await usersTableExists(locked, 'users');
        const retired = keepPrevious ? 'users_prev' : 'users_replaced';
        await dropUsersTableIfExists(locked, retired);
        const heldOff = () =>
          new AppError(
            'ERR_WRITE_IN_PROGRESS',
            `a backup held the users table for ${lockWaitMs / 1000} s, so nothing was swapped in; try again when it ends`,
          );
        await holdingNamedLock(locked, SWAP_LOCK, lockWaitMs, heldOff, async () => {
          // One statement renames both tables atomically: every reader finds `users` old or
          // new. It runs on the lock's connection: if that died (and the lock with it), so does
          // the swap.
          await sql
            .raw(
              hasUsers
                ? `RENAME TABLE users TO ${retired}, users_staging TO users`
                : 'RENAME TABLE users_staging TO users',
            )
            .execute(locked);
          // RENAME commits implicitly, so the version is bumped just after it: a cache that
          // read the old version with the new rows in between still sees the version change.
          const trx = await beginWriteTransaction(database, locked, { newUsersTable: true });
          try {
            await trx.commit().execute();
          } catch (error) {
            // Kysely keeps a transaction's connection until it ends: end it, or the lock's
            // RELEASE_LOCK would wait on that connection forever.
            await trx
              .rollback()
              .execute()
              .catch(() => undefined);
            throw error;
          }
        }).catch(async (error: unknown) => {
          if (error instanceof AppError && error.code === 'ERR_WRITE_IN_PROGRESS') {
            await dropUsersTableIfExists(locked, 'users_staging').catch(() => undefined);
          }
          throw error;
        });
        // Best effort, after the swap is complete and announced: the next replace drops a
        // leftover anyway.
        if (!keepPrevious) {
          await dropUsersTableIfExists(locked, 'users_replaced').catch(() => undefined);
        }
        return { replaced: true };
      });
      if (outcome.replaced) await router.waitForReplicas();
      return outcome;
    },
    waitForReplicas: () => router.waitForReplicas(),
    replicaStates: () =>
      monitor.replicas().map(({ name, healthy, reason, lagSeconds, lagSource, probedAt }) => ({
        name,
        healthy,
        reason,
        lagSeconds,
        lagSource,
        probedAt,
      })),
    primaryState: () => monitor.primary(),
    probeServers: () => monitor.probeAll(),
    // Corrupt pages on a MySQL server are its own to report: reads fail with its error.
    corruption: () => undefined,
    async close() {
      await heartbeat.stop();
      await monitor.stop();
      await Promise.all([
        ...[...heartbeatExecutors.values()].map((executor) => executor.destroy()),
        ...targets.flatMap(({ executor, streamExecutor }) => [
          executor.destroy(),
          streamExecutor.destroy(),
        ]),
      ]);
    },
  };
  return database;
}

/**
 * The snapshot's connection is gone (reset, closed, the server shutting down): not an SQL error,
 * and not the page's own DB_QUERY_TIMEOUT_MS on a server that answered the silence check's ping.
 */
function lostConnection(error: unknown): boolean {
  return (
    isConnectionFailure(error) && (error as { code?: unknown }).code !== 'PROTOCOL_SEQUENCE_TIMEOUT'
  );
}

/** A stream's snapshot on the server it moved to; `release` ends it. */
interface MovedSnapshot {
  executor: DatabaseExecutor;
  /** The data version it shows. */
  shown: number;
  /** Undefined on the writer. */
  replica: MonitoredReplica | undefined;
  release(): void;
}

/** Runs `read` inside one consistent, read-only snapshot on `connection` (a session of its own). */
async function readInSnapshotOn<T>(
  connection: DatabaseExecutor,
  source: string,
  read: (executor: DatabaseExecutor, source: string) => Promise<T>,
): Promise<T> {
  await sql`SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`.execute(connection);
  await sql`START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY`.execute(connection);
  try {
    return await read(connection, source);
  } finally {
    // A read-only transaction has nothing to keep; a dead connection has nothing to end.
    await sql`ROLLBACK`.execute(connection).catch(() => undefined);
  }
}

/** Migration 0002's character set, for a users table the restore has to create itself. */
const UTF8MB4_TABLE_OPTIONS = sql`CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`;
