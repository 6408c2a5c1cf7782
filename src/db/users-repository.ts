import { CompiledQuery, sql } from 'kysely';
import type { User } from '../users/user.js';
import type { DatabaseExecutor, DatabaseTransaction, UsersTableName } from './database.js';

/** Every user, in load order. */
export async function listUsers(executor: DatabaseExecutor): Promise<User[]> {
  const rows = await executor
    .selectFrom('users')
    .select(['name', 'street', 'city', 'state', 'user_date'])
    .orderBy('id')
    .execute();
  return rows.map((row) => ({
    name: row.name,
    street: row.street,
    city: row.city,
    state: row.state,
    userDate: row.user_date,
  }));
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
 * The INSERT text for a batch of n rows, compiled once per dialect and batch size: building and
 * compiling a 2,000-row Kysely query for every batch cost more than the database took to run it.
 */
const insertSqlCache = new WeakMap<object, Map<string, string>>();

function insertSql(trx: DatabaseTransaction, table: UsersTableName, rows: number): string {
  const adapter = trx.getExecutor().adapter;
  let bySize = insertSqlCache.get(adapter);
  if (bySize === undefined) insertSqlCache.set(adapter, (bySize = new Map<string, string>()));
  const key = `${table}:${rows}`;
  let text = bySize.get(key);
  if (text === undefined) {
    const placeholder = { name: '', street: '', city: '', state: '', user_date: '' };
    text = trx
      .insertInto(table)
      .values(Array<typeof placeholder>(rows).fill(placeholder))
      .compile().sql;
    bySize.set(key, text);
  }
  return text;
}

/**
 * Appends users in the given order (to `users`, or to a restore's staging table); the caller
 * sizes the batch to the dialect's limit.
 */
export async function insertUsers(
  trx: DatabaseTransaction,
  users: readonly User[],
  table: UsersTableName = 'users',
): Promise<void> {
  if (users.length === 0) return;
  const parameters: string[] = new Array<string>(users.length * 5);
  let index = 0;
  for (const user of users) {
    parameters[index++] = user.name;
    parameters[index++] = user.street;
    parameters[index++] = user.city;
    parameters[index++] = user.state;
    parameters[index++] = user.userDate;
  }
  await trx.executeQuery(CompiledQuery.raw(insertSql(trx, table, users.length), parameters));
}

export async function deleteAllUsers(trx: DatabaseTransaction): Promise<void> {
  await trx.deleteFrom('users').execute();
}

/** One page of users in load order, after `afterId` (0 for the first page). */
export async function listUsersPage(
  executor: DatabaseExecutor,
  afterId: number,
  limit: number,
): Promise<{ users: User[]; lastId: number | undefined }> {
  const rows = await executor
    .selectFrom('users')
    .select(['id', 'name', 'street', 'city', 'state', 'user_date'])
    .where('id', '>', afterId)
    .orderBy('id')
    .limit(limit)
    .execute();
  return {
    users: rows.map((row) => ({
      name: row.name,
      street: row.street,
      city: row.city,
      state: row.state,
      userDate: row.user_date,
    })),
    lastId: rows.length === 0 ? undefined : Number(rows[rows.length - 1]!.id),
  };
}
