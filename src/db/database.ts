import type { ControlledTransaction, Generated, Kysely, Transaction } from 'kysely';
import type { User } from '../users/user.js';

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
  /** A restore's rows while they load; renamed to `users` by the swap. */
  users_staging: UsersTable;
  /** The table a restore replaced, kept until the next restore. */
  users_prev: UsersTable;
  data_state: DataStateTable;
}

/** The tables that hold users rows. */
export type UsersTableName = 'users' | 'users_staging' | 'users_prev';

export type DatabaseExecutor = Kysely<DatabaseSchema>;
export type DatabaseTransaction = Transaction<DatabaseSchema>;
export type WriteTransaction = ControlledTransaction<DatabaseSchema>;

/** What the read router knows about one replica (from its probes and from failed reads). */
export interface ReplicaState {
  /** host:port, never credentials. */
  name: string;
  healthy: boolean;
  /** Why it is out of rotation; undefined while healthy. */
  reason: string | undefined;
  lagSeconds: number | null;
  /** Unix ms of the last completed probe, or null before the first. */
  probedAt: number | null;
}

/** The primary as the background probe last saw it. */
export interface TargetState {
  healthy: boolean;
  reason: string | undefined;
  /** Unix ms of the last probe, or null if never probed. */
  probedAt: number | null;
}

/** A function that reads through whichever executor the router picks. */
export type ReadQuery<T> = (executor: DatabaseExecutor) => Promise<T>;

/**
 * The service's handle on its database. Writes go to one executor (SQLite's write connection,
 * or the MySQL primary); reads go through `read`, which picks the executor: SQLite's separate
 * read connection on the same WAL file (so a long import never blocks `/api`), or a healthy
 * MySQL replica, with failover to the next replica and then the primary.
 */
export interface Database {
  readonly dialect: 'sqlite' | 'mysql';
  read<T>(query: ReadQuery<T>): Promise<T>;
  /** Executor for writes and migrations (the primary). */
  readonly write: DatabaseExecutor;
  /** How many users `insertUsers` should be given at a time on this dialect. */
  readonly maxInsertRows: number;
  /** Appends users, in order, inside a write transaction; the fastest way the dialect has. */
  insertUsers(trx: DatabaseTransaction, users: readonly User[]): Promise<void>;
  /**
   * Runs `read` inside one consistent read snapshot on a connection of its own, held for the
   * whole call: SQLite a read transaction on a separate connection (WAL); MySQL
   * `START TRANSACTION WITH CONSISTENT SNAPSHOT` on a healthy replica, else the primary. Writes
   * committed meanwhile are not seen. `source` names where it reads (`primary` or host:port).
   * @NOTE The executor is the snapshot's own: use it only inside `read`, and never stream
   * from it while issuing another query on it (one connection answers one query at a time).
   */
  readSnapshot<T>(read: (executor: DatabaseExecutor, source: string) => Promise<T>): Promise<T>;
  /**
   * Replaces every user with the rows `load` hands to `insert`, atomically: the rows go into
   * `users_staging` on the primary, then one swap (SQLite: one transaction; MySQL: one
   * `RENAME TABLE`) makes it `users` and keeps the old table as `users_prev` (the one before
   * is dropped). Readers see the old or the new table, never a partial one; if `load` or the
   * load fails, the live table is untouched. The data version is bumped and, on MySQL, the
   * call waits for the replicas like an import does.
   */
  replaceUsersTable(
    load: (insert: (users: readonly User[]) => Promise<void>) => Promise<void>,
  ): Promise<void>;
  /**
   * Call after a commit: waits (bounded) until every healthy replica has applied it, so the next
   * read anywhere sees it. A replica that does not catch up in time leaves the rotation.
   */
  waitForReplicas(): Promise<void>;
  /** The replicas' current states (empty without replicas). */
  replicaStates(): ReplicaState[];
  /** The write target as the background probe last saw it (SQLite: never probed, healthy). */
  primaryState(): TargetState;
  close(): Promise<void>;
}
