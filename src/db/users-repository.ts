import { sql } from 'kysely';
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

/** Appends users in the given order; the caller sizes the batch to the dialect's limit. */
export async function insertUsers(trx: DatabaseTransaction, users: readonly User[]): Promise<void> {
  if (users.length === 0) return;
  await trx
    .insertInto('users')
    .values(
      users.map((user) => ({
        name: user.name,
        street: user.street,
        city: user.city,
        state: user.state,
        user_date: user.userDate,
      })),
    )
    .execute();
}

export async function deleteAllUsers(trx: DatabaseTransaction): Promise<void> {
  await trx.deleteFrom('users').execute();
}
