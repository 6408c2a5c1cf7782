import type BetterSqlite3 from 'better-sqlite3';
import type { SqliteDatabase } from 'kysely';

/** Statements kept per connection: the app's queries are a few dozen SQL texts. */
const CACHED_STATEMENTS = 256;

/**
 * `connection` as Kysely's SQLite database, preparing each SQL text once: Kysely prepares every
 * query it runs again, which was a tenth of a single-user write's time on the event loop
 * (profiled at 100 writes/s: ~1 ms of ~10). A cached statement that is busy (a stream iterating
 * it) is not shared; that query gets a statement of its own. SQLite prepares a statement again
 * by itself when the schema changed under it (an import's table swap).
 */
export function withCachedStatements(connection: BetterSqlite3.Database): SqliteDatabase {
  const statements = new Map<string, BetterSqlite3.Statement>();
  return {
    close: () => connection.close(),
    prepare(sql) {
      const cached = statements.get(sql);
      if (cached !== undefined && !cached.busy) return cached;
      const statement = connection.prepare(sql);
      if (cached === undefined) {
        statements.set(sql, statement);
        const oldest = statements.keys().next().value;
        if (statements.size > CACHED_STATEMENTS && oldest !== undefined) statements.delete(oldest);
      }
      return statement;
    },
  };
}
