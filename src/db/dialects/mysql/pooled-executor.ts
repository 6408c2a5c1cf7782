import { Kysely, MysqlDialect, type LogEvent, type MysqlPool } from 'kysely';
import { createPool, type Pool, type PoolConnection } from 'mysql2';
import type { MysqlConnection, MysqlTarget } from '../../../config/config.js';
import type { DatabaseExecutor, DatabaseSchema } from '../../database.js';
import type { DatabaseObserver } from '../../database-observer.js';

/**
 * A Kysely executor on a pool of `poolSize` connections to `target`, every query bounded by
 * DB_QUERY_TIMEOUT_MS and reported to the observer under `name` (`primary` or host:port).
 * `connectionsInUse` counts the pool's borrowed connections.
 */
export function createPooledExecutor(
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
