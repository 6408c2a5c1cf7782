import {
  Kysely,
  MysqlAdapter,
  MysqlIntrospector,
  MysqlQueryCompiler,
  type CompiledQuery,
  type DatabaseConnection,
  type QueryResult,
} from 'kysely';
import type { DatabaseExecutor, DatabaseSchema } from '../../database.js';

/**
 * A MySQL executor whose every query is handed to `run`: a stream's reads go through it, so
 * `run` can bound each page and move the rest of the stream to another server's snapshot.
 * It has one connection and no transactions of its own (the snapshot is `run`'s).
 */
export function createQueryRunnerExecutor(
  run: (query: CompiledQuery) => Promise<QueryResult<unknown>>,
): DatabaseExecutor {
  const connection: DatabaseConnection = {
    executeQuery: run as DatabaseConnection['executeQuery'],
    streamQuery: () => {
      throw new Error('a stream snapshot pages with queries, never a server-side stream');
    },
  };
  const noTransactions = () =>
    Promise.reject(new Error('a stream snapshot is already a transaction'));
  return new Kysely<DatabaseSchema>({
    dialect: {
      createAdapter: () => new MysqlAdapter(),
      createDriver: () => ({
        init: () => Promise.resolve(),
        acquireConnection: () => Promise.resolve(connection),
        beginTransaction: noTransactions,
        commitTransaction: noTransactions,
        rollbackTransaction: noTransactions,
        releaseConnection: () => Promise.resolve(),
        destroy: () => Promise.resolve(),
      }),
      createIntrospector: (db) => new MysqlIntrospector(db),
      createQueryCompiler: () => new MysqlQueryCompiler(),
    },
  });
}
