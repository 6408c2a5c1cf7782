import type { DatabaseExecutor, WriteTransaction } from './database.js';

/** A key as one caller sent it, with the request it came with. */
export interface IdempotencyKeyClaim {
  caller: string;
  key: string;
  /** sha256 hex of method, path, media type and the body's sha256. */
  fingerprint: string;
  /** The clock's now when the request arrived (ms since the epoch). */
  nowMs: number;
  /** When the record stops answering for the key (ms since the epoch). */
  expiresAtMs: number;
}

/** What a write answered, as its key's record keeps it. */
export interface IdempotencyOutcome {
  status: number;
  /** The user a create made; undefined for an import. */
  userId: number | undefined;
  /** The users table generation the write went into. */
  usersGeneration: number;
  /** The JSON body the write answered (a create's is rebuilt from the user as now). */
  body: string;
}

export interface IdempotencyRecord extends IdempotencyOutcome {
  fingerprint: string;
  createdAtMs: number;
}

/**
 * What a keyed write does inside its own transaction: `claim` first (refuses, by throwing, a
 * key whose record committed meanwhile, and deletes expired records), `record` just before the
 * commit, so the record commits exactly when the write does.
 */
export interface KeyedWrite<T> {
  claim(trx: WriteTransaction): Promise<void>;
  record(trx: WriteTransaction, outcome: T): Promise<void>;
}

/** The record of `key` for `caller` that has not expired at `nowMs`, if any. */
export async function findIdempotencyRecord(
  executor: DatabaseExecutor,
  caller: string,
  key: string,
  nowMs: number,
): Promise<IdempotencyRecord | undefined> {
  const row = await executor
    .selectFrom('idempotency_keys')
    .select(['fingerprint', 'status', 'user_id', 'users_generation', 'body', 'created_at_ms'])
    .where('caller', '=', caller)
    .where('idem_key', '=', key)
    .where('expires_at_ms', '>', nowMs)
    .executeTakeFirst();
  if (row === undefined) return undefined;
  return {
    fingerprint: row.fingerprint,
    status: Number(row.status),
    userId: row.user_id === null ? undefined : Number(row.user_id),
    usersGeneration: Number(row.users_generation),
    body: row.body,
    createdAtMs: Number(row.created_at_ms),
  };
}

/**
 * Deletes every record expired at `nowMs`: a range of the `expires_at_ms` index, never a scan
 * (of this table or of users). Returns how many went.
 */
export async function deleteExpiredIdempotencyRecords(
  executor: DatabaseExecutor | WriteTransaction,
  nowMs: number,
): Promise<number> {
  const result = await executor
    .deleteFrom('idempotency_keys')
    .where('expires_at_ms', '<=', nowMs)
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}

/** Stores the record of `claim` with what its write answered; inside that write's transaction. */
export async function insertIdempotencyRecord(
  trx: WriteTransaction,
  claim: IdempotencyKeyClaim,
  outcome: IdempotencyOutcome,
): Promise<void> {
  await trx
    .insertInto('idempotency_keys')
    .values({
      caller: claim.caller,
      idem_key: claim.key,
      fingerprint: claim.fingerprint,
      status: outcome.status,
      user_id: outcome.userId ?? null,
      users_generation: outcome.usersGeneration,
      body: outcome.body,
      created_at_ms: claim.nowMs,
      expires_at_ms: claim.expiresAtMs,
    })
    .execute();
}
