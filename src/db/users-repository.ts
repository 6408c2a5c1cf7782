import { CompiledQuery, sql } from 'kysely';
import type { User } from '../users/user.js';
import type { DatabaseExecutor, DatabaseTransaction } from './database.js';

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
const insertSqlCache = new WeakMap<object, Map<number, string>>();

function insertSql(trx: DatabaseTransaction, rows: number): string {
  const adapter = trx.getExecutor().adapter;
  let bySize = insertSqlCache.get(adapter);
  if (bySize === undefined) insertSqlCache.set(adapter, (bySize = new Map<number, string>()));
  let text = bySize.get(rows);
  if (text === undefined) {
    const placeholder = { name: '', street: '', city: '', state: '', user_date: '' };
    text = trx
      .insertInto('users')
      .values(Array<typeof placeholder>(rows).fill(placeholder))
      .compile().sql;
    bySize.set(rows, text);
  }
  return text;
}

/** Appends users in the given order; the caller sizes the batch to the dialect's limit. */
export async function insertUsers(trx: DatabaseTransaction, users: readonly User[]): Promise<void> {
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
  await trx.executeQuery(CompiledQuery.raw(insertSql(trx, users.length), parameters));
}

export async function deleteAllUsers(trx: DatabaseTransaction): Promise<void> {
  await trx.deleteFrom('users').execute();
}
