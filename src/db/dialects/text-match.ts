import { MysqlAdapter, sql, type Expression, type SqlBool } from 'kysely';
import type { DatabaseExecutor } from '../database.js';

/** The LIKE escape character: `!` needs no escaping in either dialect's string syntax. */
const ESCAPE = '!';

/** `text` as a LIKE pattern that matches it literally (`%`, `_` and `!` escaped). */
function literal(text: string): string {
  return text.replace(/[!%_]/g, (character) => ESCAPE + character);
}

/**
 * `column LIKE pattern`, case-insensitively. The users table is utf8mb4_bin on MySQL (exact
 * comparisons), so the match names a case-insensitive collation there; SQLite's LIKE already
 * ignores case, for ASCII letters only (`é` and `É` differ on SQLite, not on MySQL).
 */
function likeIgnoringCase(
  executor: DatabaseExecutor,
  column: string,
  pattern: string,
): Expression<SqlBool> {
  return executor.getExecutor().adapter instanceof MysqlAdapter
    ? sql<SqlBool>`${sql.ref(column)} collate utf8mb4_general_ci like ${pattern} escape '!'`
    : sql<SqlBool>`${sql.ref(column)} like ${pattern} escape '!'`;
}

/** `column` starts with `prefix`, ignoring case. */
export function startsWithIgnoringCase(
  executor: DatabaseExecutor,
  column: string,
  prefix: string,
): Expression<SqlBool> {
  return likeIgnoringCase(executor, column, `${literal(prefix)}%`);
}

/** `column` contains `text`, ignoring case. */
export function containsIgnoringCase(
  executor: DatabaseExecutor,
  column: string,
  text: string,
): Expression<SqlBool> {
  return likeIgnoringCase(executor, column, `%${literal(text)}%`);
}
