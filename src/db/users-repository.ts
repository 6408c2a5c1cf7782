import { CompiledQuery, sql } from 'kysely';
import type { User } from '../users/user.js';
import type { DatabaseExecutor, UsersTable, UsersTableName } from './database.js';
import { containsIgnoringCase, startsWithIgnoringCase } from './dialects/text-match.js';
import {
  contractJsonOf,
  readUsersJsonObjects,
  readUsersJsonQuery,
  type UsersJsonPage,
} from './dialects/users-json.js';

/** The columns a user is stored in. */
const USER_COLUMNS = ['name', 'street', 'city', 'state', 'user_date'] as const;

type UserRow = Pick<UsersTable, (typeof USER_COLUMNS)[number]>;

/** A users row as the service's user. */
function userOf(row: UserRow): User {
  return {
    name: row.name,
    street: row.street,
    city: row.city,
    state: row.state,
    userDate: row.user_date,
  };
}

function rowOf(user: User): UserRow {
  return {
    name: user.name,
    street: user.street,
    city: user.city,
    state: user.state,
    user_date: user.userDate,
  };
}

/** A users row as the service's record (ids come back as numbers, strings or bigints). */
function userRecordOf(row: UserRow & { id: number | string | bigint }): UserRecord {
  return { id: Number(row.id), ...userOf(row) };
}

/** Every user, in load order. */
export async function listUsers(executor: DatabaseExecutor): Promise<User[]> {
  const rows = await executor.selectFrom('users').select(USER_COLUMNS).orderBy('id').execute();
  return rows.map(userOf);
}

export async function countUsers(executor: DatabaseExecutor): Promise<number> {
  const { count } = await executor
    .selectFrom('users')
    .select((eb) => eb.fn.countAll<number | bigint | string>().as('count'))
    .executeTakeFirstOrThrow();
  return Number(count);
}

/** Reads one row: fails when the table or the database cannot be read. */
export async function probeUsersTable(executor: DatabaseExecutor): Promise<void> {
  await sql`select 1 from ${sql.table('users')} limit 1`.execute(executor);
}

/**
 * The INSERT text for a batch of n rows, compiled once per dialect, table and batch size:
 * building and compiling a 2,000-row Kysely query for every batch cost more than the database
 * took to run it.
 */
const insertSqlCache = new WeakMap<object, Map<string, string>>();

function insertSql(
  executor: DatabaseExecutor,
  table: UsersTableName,
  rows: number,
  withIds: boolean,
): string {
  const adapter = executor.getExecutor().adapter;
  let bySize = insertSqlCache.get(adapter);
  if (bySize === undefined) insertSqlCache.set(adapter, (bySize = new Map<string, string>()));
  const key = `${table}:${rows}:${withIds}`;
  let text = bySize.get(key);
  if (text === undefined) {
    const placeholder = withIds
      ? { id: 0, name: '', street: '', city: '', state: '', user_date: '' }
      : { name: '', street: '', city: '', state: '', user_date: '' };
    text = executor
      .insertInto(table)
      .values(Array<typeof placeholder>(rows).fill(placeholder))
      .compile().sql;
    bySize.set(key, text);
  }
  return text;
}

/**
 * Appends users in the given order (to `users`, or to a staging table); the caller sizes the
 * batch to the dialect's limit. With `firstId` the rows get ids firstId, firstId + 1, …
 * (staged batches sent on several connections at once keep the file's order that way).
 */
export async function insertUsers(
  executor: DatabaseExecutor,
  users: readonly User[],
  table: UsersTableName = 'users',
  firstId?: number,
): Promise<void> {
  if (users.length === 0) return;
  const columns = firstId === undefined ? 5 : 6;
  const parameters = new Array<string | number>(users.length * columns);
  let index = 0;
  let id = firstId ?? 0;
  for (const user of users) {
    if (firstId !== undefined) parameters[index++] = id++;
    parameters[index++] = user.name;
    parameters[index++] = user.street;
    parameters[index++] = user.city;
    parameters[index++] = user.state;
    parameters[index++] = user.userDate;
  }
  const text = insertSql(executor, table, users.length, firstId !== undefined);
  await executor.executeQuery(CompiledQuery.raw(text, parameters));
}

/** The data version: bumped by every write transaction (see beginWriteTransaction). */
export async function readDataVersion(executor: DatabaseExecutor): Promise<number> {
  const row = await executor
    .selectFrom('data_state')
    .select('data_version')
    .where('id', '=', 1)
    .executeTakeFirst();
  return Number(row?.data_version ?? 0);
}

/** A stored user with its row id (load order). */
export interface UserRecord extends User {
  id: number;
}

/** What a users query may sort by; `id` is load order. */
export type UsersSortKey = 'id' | 'name' | 'city' | 'state' | 'userDate';

const SORT_COLUMNS = {
  id: 'id',
  name: 'name',
  city: 'city',
  state: 'state',
  userDate: 'user_date_key',
} as const;

export interface UsersFilter {
  /** Exact state code (upper case, as stored). */
  state?: string | undefined;
  /** Exact city, as stored. */
  city?: string | undefined;
  /** NAME starts with this, ignoring case. */
  namePrefix?: string | undefined;
  /** NAME, STREET, CITY or STATE contains this, ignoring case. */
  contains?: string | undefined;
}

/** Where a page ends: the sort value and id of its last row (a keyset cursor). */
export interface UsersPosition {
  key: string | number;
  id: number;
}

export interface UsersQuery extends UsersFilter {
  sort: UsersSortKey;
  descending: boolean;
  /** Only rows after this position in the sort order (stable under inserts). */
  after?: UsersPosition | undefined;
  /** Only rows before this position: the page that ends just before it (a `rel="prev"` link). */
  before?: UsersPosition | undefined;
}

/** One page of a users query, with where it starts and ends (for the cursors around it). */
export interface UsersPage {
  users: UserRecord[];
  first: UsersPosition | undefined;
  last: UsersPosition | undefined;
  /** Paging backward (`before`): whether rows come before this page. Forward: undefined. */
  moreBefore?: boolean | undefined;
}

function filteredUsers(executor: DatabaseExecutor, filter: UsersFilter) {
  let query = executor.selectFrom('users');
  if (filter.state !== undefined) query = query.where('state', '=', filter.state);
  if (filter.city !== undefined) query = query.where('city', '=', filter.city);
  const { namePrefix, contains } = filter;
  if (namePrefix !== undefined) {
    query = query.where(startsWithIgnoringCase(executor, 'name', namePrefix));
  }
  if (contains !== undefined) {
    query = query.where((eb) =>
      eb.or(
        (['name', 'street', 'city', 'state'] as const).map((column) =>
          containsIgnoringCase(executor, column, contains),
        ),
      ),
    );
  }
  return query;
}

/**
 * Up to `limit` users matching `query`, in its order, from `query.after` on (or the `limit` just
 * before `query.before`: read in the opposite order from that position, then turned round, so
 * paging back is the same index range scan as paging forward). Sorted by a column, ties are
 * broken by id, so a (value, id) position is a total order a cursor can resume from.
 */
export async function findUsers(
  executor: DatabaseExecutor,
  query: UsersQuery,
  limit: number,
): Promise<UsersPage> {
  const column = SORT_COLUMNS[query.sort];
  const backward = query.before !== undefined;
  // The order rows are read in: the query's, or its reverse when paging back.
  const descending = query.descending !== backward;
  const direction = descending ? 'desc' : 'asc';
  const beyond = descending ? '<' : '>';
  // user_date_key is computed per row: read it only when it is the sort (and cursor) value.
  let select = filteredUsers(executor, query).select([
    'id',
    ...USER_COLUMNS,
    ...(column === 'user_date_key' ? (['user_date_key'] as const) : []),
  ]);
  const from = query.before ?? query.after;
  if (from !== undefined) {
    select =
      column === 'id'
        ? select.where('id', beyond, from.id)
        : // `column >= key` first: the part an index range can use on both dialects.
          select.where((eb) =>
            eb.and([
              eb(column, descending ? '<=' : '>=', String(from.key)),
              eb.or([eb(column, beyond, String(from.key)), eb('id', beyond, from.id)]),
            ]),
          );
  }
  if (column === 'id') select = select.orderBy('id', direction);
  else if (query.contains === undefined) select = select.orderBy(column, direction);
  else {
    // A substring search can use no index, and walking the sort's index to test each row in
    // that order took SQLite 3.6 s for a rare `q` at 1,000,000 users (a common one: 7 ms).
    // `+column` is an expression to SQLite: it scans the table and sorts the matches instead,
    // about 0.2 s whatever `q` is.
    select = select.orderBy(sql`+${sql.ref(column)}`, direction);
  }
  if (column !== 'id') select = select.orderBy('id', direction);
  // Backward, one row more says whether there is a page before this one.
  const rows = await select.limit(backward ? limit + 1 : limit).execute();
  const moreBefore = backward ? rows.length > limit : undefined;
  if (backward) {
    rows.length = Math.min(rows.length, limit);
    rows.reverse();
  }
  const positionOf = (row: (typeof rows)[number] | undefined): UsersPosition | undefined =>
    row === undefined
      ? undefined
      : {
          key: column === 'id' ? Number(row.id) : String((row as Record<string, unknown>)[column]),
          id: Number(row.id),
        };
  return {
    users: rows.map(userRecordOf),
    first: positionOf(rows[0]),
    last: positionOf(rows.at(-1)),
    moreBefore,
  };
}

/** How many users match `filter`. */
export async function countMatchingUsers(
  executor: DatabaseExecutor,
  filter: UsersFilter,
): Promise<number> {
  const { count } = await filteredUsers(executor, filter)
    .select((eb) => eb.fn.countAll<number | bigint | string>().as('count'))
    .executeTakeFirstOrThrow();
  return Number(count);
}

/** A stored user with what its ETag is made of (migration 0006). */
export interface VersionedUser extends UserRecord {
  /** The data version of the write that last changed the row; 0 when an import loaded it. */
  rowVersion: number;
  /** The data version at which the live users table was swapped in. */
  generation: number;
}

/**
 * One user by id with its row version and the table's generation, read in one statement (so
 * the two agree on a replica too), or undefined.
 */
export async function findUserById(
  executor: DatabaseExecutor,
  id: number,
): Promise<VersionedUser | undefined> {
  const row = await executor
    .selectFrom('users')
    .select(['id', ...USER_COLUMNS, 'row_version'])
    .select((eb) =>
      eb
        .selectFrom('data_state')
        .select('users_generation')
        .where('data_state.id', '=', 1)
        .as('generation'),
    )
    .where('users.id', '=', id)
    .executeTakeFirst();
  if (row === undefined) return undefined;
  return {
    ...userRecordOf(row),
    rowVersion: Number(row.row_version),
    generation: Number(row.generation ?? 0),
  };
}

/** Appends one user written at data version `rowVersion`; returns its id. */
export async function insertUser(
  executor: DatabaseExecutor,
  user: User,
  rowVersion: number,
): Promise<number> {
  const { insertId } = await executor
    .insertInto('users')
    .values({ ...rowOf(user), row_version: rowVersion })
    .executeTakeFirstOrThrow();
  return Number(insertId);
}

/** Replaces the fields of user `id`, written at data version `rowVersion`. */
export async function updateUser(
  executor: DatabaseExecutor,
  id: number,
  user: User,
  rowVersion: number,
): Promise<void> {
  await executor
    .updateTable('users')
    .set({ ...rowOf(user), row_version: rowVersion })
    .where('id', '=', id)
    .execute();
}

export async function deleteUser(executor: DatabaseExecutor, id: number): Promise<void> {
  await executor.deleteFrom('users').where('id', '=', id).execute();
}

/** The users table's generation (see VersionedUser). */
export async function readUsersGeneration(executor: DatabaseExecutor): Promise<number> {
  const row = await executor
    .selectFrom('data_state')
    .select('users_generation')
    .where('id', '=', 1)
    .executeTakeFirst();
  return Number(row?.users_generation ?? 0);
}

/** One page of users in load order, after `afterId` (0 for the first page). */
export async function listUsersPage(
  executor: DatabaseExecutor,
  afterId: number,
  limit: number,
): Promise<{ users: User[]; lastId: number | undefined }> {
  const rows = await executor
    .selectFrom('users')
    .select(['id', ...USER_COLUMNS])
    .where('id', '>', afterId)
    .orderBy('id')
    .limit(limit)
    .execute();
  return {
    users: rows.map(userOf),
    lastId: rows.length === 0 ? undefined : Number(rows[rows.length - 1]!.id),
  };
}

/**
 * Up to `limit` users after `afterId` in load order, as one page of the bare `/api` body: each
 * user the contract's JSON object, rendered by the database.
 */
export function readUsersJsonPage(
  executor: DatabaseExecutor,
  afterId: number,
  limit: number,
): Promise<UsersJsonPage> {
  return readUsersJsonQuery(executor, usersJsonAfter(executor, afterId).limit(limit));
}

/**
 * The users with ids in `(afterId, lastId]`, in load order, as one page of the bare `/api` body
 * (the contract's JSON objects, comma-separated). Pages by fixed id range, unlike
 * `readUsersJsonPage`, keep their bounds when rows before them come or go: a change re-renders
 * only the pages whose ranges it touched (http/api-cache.ts).
 */
export function readUsersJsonRange(
  executor: DatabaseExecutor,
  afterId: number,
  lastId: number,
  withIds = false,
): Promise<UsersJsonPage> {
  return readUsersJsonQuery(
    executor,
    usersJsonAfter(executor, afterId).where('id', '<=', lastId),
    withIds,
  );
}

/** The users among `ids` that exist, each as the contract's JSON object (as in a page). */
export function readUsersJsonByIds(
  executor: DatabaseExecutor,
  ids: readonly number[],
): Promise<Map<number, Buffer>> {
  if (ids.length === 0) return Promise.resolve(new Map<number, Buffer>());
  return readUsersJsonObjects(usersJsonAfter(executor, 0).where('id', 'in', [...ids]));
}

/** The ids in `(afterId, lastId]`, ascending (a range of the primary key: no row is read). */
export async function readUserIdsInRange(
  executor: DatabaseExecutor,
  afterId: number,
  lastId: number,
): Promise<number[]> {
  const rows = await executor
    .selectFrom('users')
    .select('id')
    .where('id', '>', afterId)
    .where('id', '<=', lastId)
    .orderBy('id')
    .execute();
  return rows.map((row) => Number(row.id));
}

/** The users after `afterId` in load order, each as the contract's JSON object. */
function usersJsonAfter(executor: DatabaseExecutor, afterId: number) {
  return executor
    .selectFrom('users')
    .select(['id', contractJsonOf(executor).as('json')])
    .where('id', '>', afterId)
    .orderBy('id');
}

/** The lowest user id after `afterId`, or undefined when there is none (one index seek). */
export async function readNextUserId(
  executor: DatabaseExecutor,
  afterId: number,
): Promise<number | undefined> {
  const { id } = await executor
    .selectFrom('users')
    .select((eb) => eb.fn.min('id').as('id'))
    .where('id', '>', afterId)
    .executeTakeFirstOrThrow();
  return id === null || id === undefined ? undefined : Number(id);
}

/** The highest user id, or 0 for an empty table. */
export async function readMaxUserId(executor: DatabaseExecutor): Promise<number> {
  const { id } = await executor
    .selectFrom('users')
    .select((eb) => eb.fn.max('id').as('id'))
    .executeTakeFirstOrThrow();
  return Number(id ?? 0);
}
