import type { ControlledTransaction, Generated, Kysely, Transaction } from 'kysely';

/** The users table. `id` gives the load order: `/api` lists users by it. */
export interface UsersTable {
  id: Generated<number>;
  name: string;
  street: string;
  city: string;
  state: string;
  user_date: string;
}

/**
 * One row (id = 1). Every write transaction updates it first: that takes the write lock before
 * anything is read (so "import if empty" checks and writes atomically across instances), and
 * `data_version` tells every instance that the users changed.
 */
export interface DataStateTable {
  id: number;
  data_version: number;
}

export interface DatabaseSchema {
  users: UsersTable;
  data_state: DataStateTable;
}

export type DatabaseExecutor = Kysely<DatabaseSchema>;
export type DatabaseTransaction = Transaction<DatabaseSchema>;
export type WriteTransaction = ControlledTransaction<DatabaseSchema>;

/**
 * The service's handle on its database. Reads and writes go through separate executors: on
 * SQLite two connections to one WAL file (so a long import never blocks `/api`), and on MySQL
 * the place where replica routing slots in.
 */
export interface Database {
  readonly dialect: 'sqlite';
  /** Executor for reads; may lag the writer by one in-flight transaction. */
  readonly read: DatabaseExecutor;
  /** Executor for writes and migrations. */
  readonly write: DatabaseExecutor;
  /** How many rows one multi-row INSERT may carry on this dialect. */
  readonly maxInsertRows: number;
  close(): Promise<void>;
}
