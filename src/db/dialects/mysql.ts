import { Kysely, MysqlDialect, sql, type LogEvent, type MysqlPool } from 'kysely';
import { createPool, type Pool, type PoolConnection } from 'mysql2';
import type { MysqlConnection, MysqlTarget } from '../../config/config.js';
import type { Database, DatabaseExecutor, DatabaseSchema } from '../database.js';
import { IGNORE_DATABASE_EVENTS, type DatabaseObserver } from '../database-observer.js';
import { insertUsers } from '../users-repository.js';
import { createReplicaRouter, type ReplicationSql, type RouterLogger } from '../replica-router.js';

export type DatabaseLogger = RouterLogger;

/**
 * Rows per multi-row INSERT: 2,000 rows × 5 columns keeps a statement far below MySQL's
 * 65,535 placeholders and a few hundred KB, well inside the default max_allowed_packet.
 */
const MAX_INSERT_ROWS = 2000;

/**
 * Opens pools to the primary and each replica and starts the replica router. The observer hears
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
  ].map(({ name, target }) => ({ name, ...createExecutor(target, connection, name, observer) }));
  const [primaryTarget, ...replicaTargets] = targets as [(typeof targets)[0], ...typeof targets];
  const primary = primaryTarget.executor;
  const replicas = replicaTargets.map(({ name, executor }) => ({ name, executor }));
  const router = createReplicaRouter({
    observer,
    afterProbe: () => {
      for (const { name, connectionsInUse } of targets)
        observer.poolConnectionsInUse(name, connectionsInUse());
    },
    primary,
    replicas,
    replication: mysqlReplicationSql(),
    maxLagSeconds: connection.maxReplicaLagSeconds,
    probeIntervalMs: connection.replicaProbeIntervalMs,
    waitMs: connection.replicaWaitMs,
    logger: options.logger,
  });
  let snapshots = 0;
  return {
    dialect: 'mysql',
    read: (query) => router.read(query),
    async readSnapshot(query) {
      snapshots += 1;
      try {
        // REPEATABLE READ: the snapshot is taken at the first read and kept to the end.
        return await router.read((executor) =>
          executor
            .transaction()
            .setIsolationLevel('repeatable read')
            .setAccessMode('read only')
            .execute((trx) => query(trx)),
        );
      } finally {
        snapshots -= 1;
      }
    },
    activeSnapshots: () => snapshots,
    write: primary,
    maxInsertRows: MAX_INSERT_ROWS,
    insertUsers,
    // InnoDB keeps secondary index inserts cheap (change buffer); DDL would commit the load.
    prepareBulkLoad: () => Promise.resolve(() => Promise.resolve()),
    waitForReplicas: () => router.waitForReplicas(),
    replicaStates: () => router.states(),
    primaryState: () => router.primaryState(),
    async close() {
      await router.stop();
      await Promise.all(
        [primary, ...replicas.map((replica) => replica.executor)].map((db) => db.destroy()),
      );
    },
  };
}

function createExecutor(
  target: MysqlTarget,
  connection: MysqlConnection,
  name: string,
  observer: DatabaseObserver,
): { executor: DatabaseExecutor; connectionsInUse: () => number } {
  const pool = createPool({
    host: target.host,
    port: target.port,
    user: target.user,
    password: target.password,
    database: target.database,
    connectionLimit: connection.poolSize,
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
 * form, after which it drops the connection. Without it a hung server would hang requests.
 */
function withQueryTimeout(pool: Pool, timeoutMs: number): MysqlPool {
  const wrap = (connection: PoolConnection) =>
    new Proxy(connection, {
      get(target, property) {
        if (property === 'query') {
          return (statement: string, values: unknown[], callback?: (...args: unknown[]) => void) =>
            callback === undefined
              ? target.query({ sql: statement, timeout: timeoutMs }, values)
              : target.query({ sql: statement, timeout: timeoutMs }, values, callback);
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
      const { rows } = await sql<{
        result: number | string;
      }>`SELECT WAIT_FOR_EXECUTED_GTID_SET(${position}, ${seconds}) AS result`.execute(replica);
      return Number(rows[0]?.result) === 0;
    },
  };
}

function ioStateOf(value: unknown): 'running' | 'connecting' | 'stopped' {
  if (value === 'Yes') return 'running';
  return value === 'Connecting' ? 'connecting' : 'stopped';
}
