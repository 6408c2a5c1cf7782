import { MysqlAdapter, sql, type RawBuilder, type SelectQueryBuilder } from 'kysely';
import type { DatabaseExecutor, DatabaseSchema } from '../database.js';

const EMPTY = Buffer.alloc(0);

/** One page of the bare `/api` body, as the database rendered it. */
export interface UsersJsonPage {
  /** The users' JSON objects as UTF-8, comma-separated (no brackets); empty for an empty page. */
  json: Buffer;
  rows: number;
  /** The page's last row id: where the next page starts. */
  lastId: number | undefined;
  /** Each row's id in order, when asked for (`withIds`). */
  ids?: number[];
}

/** A users query that yields each row's id and its contract JSON, in load order. */
export type UsersJsonQuery = SelectQueryBuilder<
  DatabaseSchema,
  'users',
  { id: number; json: string }
>;

/**
 * A users row as the contract's JSON object (`{"NAME":…,"STREET":…,"CITY":…,"STATE":…,
 * "USER_DATE":…}`), rendered by the database: building a JS object per row and serialising it
 * took three times as long as SQLite takes to write the JSON itself. SQLite's json_object
 * escapes exactly as JSON.stringify does; MySQL's JSON_OBJECT reorders keys, so there the
 * object is concatenated from JSON_QUOTE'd values.
 * @see ../../../docs/design-notes.md#json-pages-rendered-by-the-database-as-blobs
 */
export function contractJsonOf(executor: DatabaseExecutor): RawBuilder<string> {
  return executor.getExecutor().adapter instanceof MysqlAdapter
    ? sql<string>`concat('{"NAME":', json_quote(name), ',"STREET":', json_quote(street),
        ',"CITY":', json_quote(city), ',"STATE":', json_quote(state),
        ',"USER_DATE":', json_quote(user_date), '}')`
    : sql<string>`json_object('NAME', name, 'STREET', street, 'CITY', city,
        'STATE', state, 'USER_DATE', user_date)`;
}

/**
 * Runs `query` and joins its JSON objects with commas into one page. SQLite joins them itself
 * and hands the page back as a blob: its UTF-8 bytes as they are, where text would be decoded
 * into a JS string only to be encoded again. MySQL's rows are joined here (GROUP_CONCAT would
 * cut a page at group_concat_max_len).
 */
export async function readUsersJsonQuery(
  executor: DatabaseExecutor,
  query: UsersJsonQuery,
  withIds = false,
): Promise<UsersJsonPage> {
  if (executor.getExecutor().adapter instanceof MysqlAdapter) {
    const rows = await query.execute();
    const last = rows.at(-1);
    return {
      json: Buffer.from(rows.map((row) => row.json).join(',')),
      rows: rows.length,
      lastId: last === undefined ? undefined : Number(last.id),
      ...(withIds && { ids: rows.map((row) => Number(row.id)) }),
    };
  }
  // group_concat takes the rows in the order the subquery yields them (a rowid range scan);
  // `order by id` inside it would sort each page again, a third of the time. The integration
  // test 'renders the bare body byte for byte…' holds the order across pages.
  // The ids come from the same pass over the same rows, so in the same order.
  const { rows } = await sql<{
    json: Buffer | null;
    rows: number;
    last_id: number | null;
    ids?: string | null;
  }>`
    select cast(group_concat(json, ',') as blob) as json, count(*) as rows, max(id) as last_id
      ${withIds ? sql`, group_concat(id) as ids` : sql``}
    from ${query}`.execute(executor);
  const page = rows[0];
  return {
    json: page?.json ?? EMPTY,
    rows: Number(page?.rows ?? 0),
    lastId: page?.last_id == null ? undefined : Number(page.last_id),
    ...(withIds && { ids: page?.ids == null ? [] : page.ids.split(',').map(Number) }),
  };
}

/** Each row of `query` by id, its contract JSON object as the same bytes a page holds. */
export async function readUsersJsonObjects(query: UsersJsonQuery): Promise<Map<number, Buffer>> {
  const rows = await query.execute();
  return new Map(rows.map((row) => [Number(row.id), Buffer.from(row.json)]));
}
