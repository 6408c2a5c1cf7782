import { Kysely, MysqlDialect, sql, type LogEvent, type MysqlPool } from 'kysely';
import { createPool, type Pool, type PoolConnection } from 'mysql2';
import type { MysqlConnection, MysqlTarget } from '../../config/config.js';
import { AppError } from '../../errors.js';
import type { User } from '../../users/user.js';
import { beginWriteTransaction, writesUnavailable } from '../begin-write-transaction.js';
import type { Database, DatabaseExecutor, DatabaseSchema, ReplaceOutcome } from '../database.js';
import { IGNORE_DATABASE_EVENTS, type DatabaseObserver } from '../database-observer.js';
import { isDatabaseFailure } from '../is-database-failure.js';
import { countUsers, insertUsers } from '../users-repository.js';
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
  type ReplicationSql,
  type TopologyLogger,
} from '../topology-monitor.js';
import { createStreamSlots } from '../stream-slots.js';

export type DatabaseLogger = TopologyLogger;

/**
 * Rows per multi-row INSERT: 2,000 rows × 5 columns keeps a statement far below MySQL's
 * 65,535 placeholders and a few hundred KB, well inside the default max_allowed_packet.
 */
const MAX_INSERT_ROWS = 2000;

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
    ...createExecutor(target, connection, connection.poolSize, name, observer),
    // Streams wait on their clients: a pool of their own, so they never hold the connections
    // ordinary reads and health checks need.
    streamExecutor: createExecutor(
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
  const streams = createStreamSlots(connection.maxConcurrentStreams, observer);
  const replication = mysqlReplicationSql();
  const monitor = createTopologyMonitor({
    observer,
    afterProbe: () => {
      for (const { name, connectionsInUse } of targets)
        observer.poolConnectionsInUse(name, connectionsInUse());
    },
    primary,
    replicas,
    replication,
    schemaMigration: LATEST_MIGRATION,
    maxLagSeconds: connection.maxReplicaLagSeconds,
    probeIntervalMs: connection.replicaProbeIntervalMs,
    logger: options.logger,
  });
  const router = createReplicaRouter({
    monitor,
    primary,
    replication,
    waitMs: connection.replicaWaitMs,
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
  const database: Database = {
    dialect: 'mysql',
    read: (query) => router.read(query),
    activeSnapshots: () => snapshots,
    write: primary,
    maxInsertRows: MAX_INSERT_ROWS,
    insertUsers,
    async readSnapshot(readInSnapshot, options = {}) {
      snapshots += 1;
      try {
        if (options.holdOffSwaps !== true)
          return await snapshotOn(router.readSource(), readInSnapshot);
        let locking = true;
        try {
          return await primary.connection().execute((lockConnection) =>
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
          return await snapshotOn(streamSources.get(router.readSource().name)!, readInSnapshot);
        } finally {
          snapshots -= 1;
        }
      }),
    async withWriteLock(write) {
      const refused = () =>
        new AppError(
          'ERR_WRITE_IN_PROGRESS',
          `another import or restore (on this or another instance) held the write lock for ${lockWaitMs / 1000} s; try again when it ends`,
        );
      // A write needs this release's schema on the primary: one that lands before the start-up
      // migrations (the primary just came back) would build tables the migrations then trip on.
      if (monitor.primary().schemaCurrent !== true) {
        throw new AppError(
          'ERR_DB_PRIMARY_UNAVAILABLE',
          monitor.primary().healthy
            ? "the primary's schema is older than this release: writes wait for its migrations"
            : 'primary database unavailable: writes are refused until it is back; reads go on',
        );
      }
      // Writers of this process queue here first, so at most one of its connections waits on
      // GET_LOCK: twenty waiting there would hold the pool the lock's owner needs to load rows.
      const deadline = Date.now() + lockWaitMs;
      const turn = await processQueue.take(lockWaitMs);
      if (turn === undefined) throw refused();
      let locked = false;
      try {
        return await primary.connection().execute((connection) =>
          holdingNamedLock(connection, WRITE_LOCK, deadline - Date.now(), refused, () => {
            locked = true;
            return write(connection);
          }),
        );
      } catch (error) {
        if (!locked && error instanceof AppError) throw error; // the refusal above
        throw writesUnavailable(database, error);
      } finally {
        turn();
      }
    },
    async replaceUsersTable(load, { ifEmpty, keepPrevious }) {
      const outcome = await database.withWriteLock(async (locked): Promise<ReplaceOutcome> => {
        if (ifEmpty) {
          const rows = await countUsers(locked);
          if (rows > 0) return { replaced: false, rows };
        }
        await dropUsersTableIfExists(locked, 'users_staging');
        await createUsersTable(locked, 'users_staging', UTF8MB4_TABLE_OPTIONS);
        // With one connection in the pool, the lock's own connection loads the rows.
        const stage = stagedInserter(poolSize > 1 ? primary : locked, poolSize > 2 ? 2 : 1);
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
          const trx = await beginWriteTransaction(database, locked);
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
      monitor.replicas().map(({ name, healthy, reason, lagSeconds, probedAt }) => ({
        name,
        healthy,
        reason,
        lagSeconds,
        probedAt,
      })),
    primaryState: () => monitor.primary(),
    probeServers: () => monitor.probeAll(),
    // Corrupt pages on a MySQL server are its own to report: reads fail with its error.
    corruption: () => undefined,
    async close() {
      await monitor.stop();
      await Promise.all(
        targets.flatMap(({ executor, streamExecutor }) => [
          executor.destroy(),
          streamExecutor.destroy(),
        ]),
      );
    },
  };
  return database;
}

/**
 * Loads a replace's rows into `users_staging`, each batch its own autocommit INSERT (staged rows
 * are invisible to readers, so there is no giant transaction for the binlog or the replicas to
 * apply in one go: the replica applies the batches while the primary takes the next ones), up
 * to `streams` batches at once on pooled connections. Ids are given explicitly, so batches that
 * finish out of order still keep the file's order. With two streams the primary parses one
 * batch while it writes the other: 1,000,000 rows loaded in ~5.4 s instead of ~6.4 s here.
 * `insert` resolves once its batch is under way; `finished` ends the load, waits for every
 * batch and throws the first failure (a failure also makes every later `insert` throw).
 */
function stagedInserter(executor: DatabaseExecutor, streams: number) {
  let nextId = 1;
  let failure: { error: unknown } | undefined;
  let closed = false;
  const running = new Set<Promise<void>>();
  const rethrow = () => {
    if (failure !== undefined) throw failure.error;
  };
  return {
    insert: async (users: readonly User[]): Promise<void> => {
      while (running.size >= streams) await Promise.race(running);
      // A batch still waiting for a stream when the load ended must not start after it.
      if (closed) throw new Error('the staged load has ended');
      rethrow();
      const firstId = nextId;
      nextId += users.length;
      const batch: Promise<void> = insertUsers(executor, users, 'users_staging', firstId).then(
        () => void running.delete(batch),
        (error: unknown) => {
          running.delete(batch);
          failure ??= { error };
        },
      );
      running.add(batch);
    },
    /** Waits for every batch; returns how many rows were staged. */
    finished: async (): Promise<number> => {
      closed = true;
      while (running.size > 0) await Promise.all(running);
      rethrow();
      return nextId - 1;
    },
  };
}

/**
 * First come, first served turns. `take(waitMs)` resolves with the function that ends the turn,
 * or undefined if the turns before it did not end within `waitMs` (it then gives up its place
 * without holding up the turns after it).
 */
function createTurnQueue() {
  let last: Promise<void> = Promise.resolve();
  return {
    async take(waitMs: number): Promise<(() => void) | undefined> {
      let end!: () => void;
      const mine = new Promise<void>((resolve) => (end = resolve));
      const before = last;
      last = before.then(() => mine);
      let timer: NodeJS.Timeout | undefined;
      const started = await Promise.race([
        before.then(() => true),
        new Promise<false>((resolve) => (timer = setTimeout(resolve, waitMs, false))),
      ]);
      clearTimeout(timer);
      if (started) return end;
      end();
      return undefined;
    },
  };
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

/** The named lock every writer takes (MySQL locks are per server, across databases). */
const WRITE_LOCK = 'users-api.write';

/**
 * Held by a backup for as long as its snapshot is open, and by a table swap (restore, replace
 * or if-empty import) around its RENAME. A snapshot's transaction keeps the users table's
 * metadata lock to its end; a RENAME needs that lock exclusively, so on the server that holds
 * the snapshot (the replica, once the RENAME is replicated) it would wait for the backup to
 * end, and every read of the table would queue behind it: replica reads stalled for the rest of
 * the backup (measured on the MariaDB pair). Instead the swap waits here, where nobody reads.
 */
const SWAP_LOCK = 'users-api.swap';

/**
 * Runs `work` holding the named lock on `connection`; throws `refused()` when the lock is not
 * had within `waitMs`. A dead connection releases its locks by itself (the server frees them).
 */
async function holdingNamedLock<T>(
  connection: DatabaseExecutor,
  name: string,
  waitMs: number,
  refused: () => Error,
  work: () => Promise<T>,
): Promise<T> {
  const { rows } = await sql<{ locked: number | string | null }>`
    SELECT GET_LOCK(${name}, ${Math.max(0, waitMs) / 1000}) AS locked`.execute(connection);
  if (Number(rows[0]?.locked) !== 1) throw refused();
  try {
    return await work();
  } finally {
    await sql`SELECT RELEASE_LOCK(${name})`.execute(connection).catch(() => undefined);
  }
}

/** Migration 0002's character set, for a users table the restore has to create itself. */
const UTF8MB4_TABLE_OPTIONS = sql`CHARACTER SET utf8mb4 COLLATE utf8mb4_bin`;

function createExecutor(
  target: MysqlTarget,
  connection: MysqlConnection,
  poolSize: number,
  name: string,
  observer: DatabaseObserver,
): { executor: DatabaseExecutor; connectionsInUse: () => number } {
  const pool = createPool({
    host: target.host,
    port: target.port,
    user: target.user,
    password: target.password,
    database: target.database,
    connectionLimit: poolSize,
    connectTimeout: connection.connectTimeoutMs,
    enableKeepAlive: true,
    // Values stay as the server sends them: no date parsing, counts as numbers or strings.
    dateStrings: true,
    supportBigNumbers: true,
  });
  const executor = new Kysely<DatabaseSchema>({
    dialect: new MysqlDialect({ pool: withQueryTimeout(pool, connection.queryTimeoutMs) }),
    log: (event: LogEvent) => {
      const operation = /^\s*(select|show)\b/i.test(event.query.sql) ? 'read' : 'write';
      observer.queryFinished(name, operation, event.queryDurationMillis / 1000);
      if (event.level === 'error') observer.queryFailed(name);
    },
  });
  // mysql2 keeps no public count of borrowed connections; these arrays are its pool's own.
  const internals = pool as unknown as {
    _allConnections?: { length: number };
    _freeConnections?: { length: number };
  };
  const connectionsInUse = () =>
    (internals._allConnections?.length ?? 0) - (internals._freeConnections?.length ?? 0);
  return { executor, connectionsInUse };
}

/**
 * Kysely calls `query(sql, parameters)`; mysql2 takes a per-query timeout only in its options
 * form. Without it a hung server would hang requests. mysql2's timeout only fails the caller:
 * the statement would go on running on the server and the busy connection would go back to
 * the pool, so a timed-out connection is destroyed (the server then drops its statement and
 * any open transaction with it) and leaves the pool.
 */
function withQueryTimeout(pool: Pool, timeoutMs: number): MysqlPool {
  const wrap = (connection: PoolConnection) =>
    new Proxy(connection, {
      get(target, property) {
        if (property === 'query') {
          return (statement: string, values: unknown[], callback?: (...args: unknown[]) => void) =>
            callback === undefined
              ? target.query({ sql: statement, timeout: timeoutMs }, values)
              : target.query({ sql: statement, timeout: timeoutMs }, values, (error, ...rest) => {
                  if ((error as { code?: unknown } | null)?.code === 'PROTOCOL_SEQUENCE_TIMEOUT') {
                    target.destroy();
                  }
                  callback(error, ...rest);
                });
        }
        // Bound to the real connection: release() hands `this` back to the pool, which must
        // get the connection itself, not this wrapper (or the next borrower wraps a wrapper).
        const value = Reflect.get(target, property, target) as unknown;
        return typeof value === 'function'
          ? (value as (...args: unknown[]) => unknown).bind(target)
          : value;
      },
    });
  return {
    getConnection(callback) {
      pool.getConnection((error, connection) =>
        callback(error, error ? connection : wrap(connection)),
      );
    },
    end(callback) {
      pool.end(callback);
    },
  };
}

type Flavor = 'mariadb' | 'mysql';

/**
 * MariaDB and MySQL answer the same questions in different SQL: MariaDB 10.5+ accepts
 * `SHOW REPLICA STATUS` but keeps the old column names and waits with MASTER_GTID_WAIT;
 * MySQL 8.0.22+ renamed the columns and waits with WAIT_FOR_EXECUTED_GTID_SET.
 */
function mysqlReplicationSql(): ReplicationSql {
  const flavors = new WeakMap<DatabaseExecutor, Flavor>();
  const flavorOf = async (executor: DatabaseExecutor): Promise<Flavor> => {
    const known = flavors.get(executor);
    if (known !== undefined) return known;
    const { rows } = await sql<{ version: string }>`SELECT VERSION() AS version`.execute(executor);
    const flavor = /mariadb/i.test(rows[0]?.version ?? '') ? 'mariadb' : 'mysql';
    flavors.set(executor, flavor);
    return flavor;
  };
  return {
    async replicaStatus(replica) {
      let rows: Record<string, unknown>[];
      try {
        rows = (await sql<Record<string, unknown>>`SHOW REPLICA STATUS`.execute(replica)).rows;
      } catch (error) {
        // MySQL before 8.0.22 knows only the old statement.
        if ((error as { code?: unknown }).code !== 'ER_PARSE_ERROR') throw error;
        rows = (await sql<Record<string, unknown>>`SHOW SLAVE STATUS`.execute(replica)).rows;
      }
      const row = rows[0];
      if (row === undefined) return undefined;
      const column = (current: string, old: string) => row[current] ?? row[old];
      const lag = column('Seconds_Behind_Source', 'Seconds_Behind_Master');
      return {
        ioState: ioStateOf(column('Replica_IO_Running', 'Slave_IO_Running')),
        sqlRunning: column('Replica_SQL_Running', 'Slave_SQL_Running') === 'Yes',
        lagSeconds: lag === null || lag === undefined ? null : Number(lag),
      };
    },
    async ping(executor) {
      await sql`SELECT 1`.execute(executor);
    },
    async hasMigration(executor, migration) {
      try {
        const { rows } = await sql`
          SELECT 1 FROM kysely_migration WHERE name = ${migration}`.execute(executor);
        return rows.length > 0;
      } catch (error) {
        // A database no migration ever ran on has no schema at all.
        if ((error as { code?: unknown }).code === 'ER_NO_SUCH_TABLE') return false;
        throw error;
      }
    },
    async primaryPosition(primary) {
      const query =
        (await flavorOf(primary)) === 'mariadb'
          ? sql<{ position: string }>`SELECT @@GLOBAL.gtid_binlog_pos AS position`
          : sql<{ position: string }>`SELECT @@GLOBAL.gtid_executed AS position`;
      return (await query.execute(primary)).rows[0]?.position ?? '';
    },
    async waitForPosition(replica, position, seconds) {
      if (position === '') return true;
      if ((await flavorOf(replica)) === 'mariadb') {
        const { rows } = await sql<{
          result: number | string;
        }>`SELECT MASTER_GTID_WAIT(${position}, ${seconds}) AS result`.execute(replica);
        return Number(rows[0]?.result) === 0;
      }
      if (seconds <= 0) {
        // WAIT_FOR_EXECUTED_GTID_SET(set, 0) waits forever on MySQL: ask without waiting.
        const { rows } = await sql<{
          applied: number | string;
        }>`SELECT GTID_SUBSET(${position}, @@GLOBAL.gtid_executed) AS applied`.execute(replica);
        return Number(rows[0]?.applied) === 1;
      }
      // MySQL takes whole seconds here.
      const { rows } = await sql<{
        result: number | string;
      }>`SELECT WAIT_FOR_EXECUTED_GTID_SET(${position}, ${Math.ceil(seconds)}) AS result`.execute(
        replica,
      );
      return Number(rows[0]?.result) === 0;
    },
  };
}

function ioStateOf(value: unknown): 'running' | 'connecting' | 'stopped' {
  if (value === 'Yes') return 'running';
  return value === 'Connecting' ? 'connecting' : 'stopped';
}
