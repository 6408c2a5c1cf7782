import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import type { FastifyRequest } from 'fastify';
import { writesUnavailable } from '../db/begin-write-transaction.js';
import type { Database } from '../db/database.js';
import {
  deleteExpiredIdempotencyRecords,
  findIdempotencyRecord,
  insertIdempotencyRecord,
  type IdempotencyKeyClaim,
  type IdempotencyOutcome,
  type IdempotencyRecord,
  type KeyedWrite,
} from '../db/idempotency-keys-repository.js';
import { AppError } from '../errors.js';

/** The longest key accepted, in characters (the column's width). */
export const MAX_IDEMPOTENCY_KEY_CHARS = 255;

/**
 * Whose keys these are. There is one admin (ADMIN_TOKEN, or loopback without one), so one
 * scope; the column exists so that more callers never share keys.
 */
const ADMIN_CALLER = 'admin';

export const IDEMPOTENCY_KEY_DESCRIPTION =
  'Optional (draft-ietf-httpapi-idempotency-key-header-07): a structured-field string, e.g. `"6f1c…"` (quoted, 1–255 printable ASCII characters). A retry with the same key and the same request answers what the first one did, without writing again; the same key with another request is 422, while the first is still running 409; a key is kept for IDEMPOTENCY_KEY_TTL_SECONDS.';

export interface IdempotencyKeys {
  /**
   * The request's key with its fingerprint (method, path, media type, the body's sha256), or
   * undefined without an `Idempotency-Key` header. A malformed key is ERR_IDEMPOTENCY_KEY_INVALID.
   */
  claimOf(request: FastifyRequest, bodySha256: string): IdempotencyKeyClaim | undefined;
  /**
   * Runs `write` at most once per key: a key already recorded answers `replay(record)` (or 422
   * for another request), a key in flight on this instance 409. `write` must run `keyed` inside
   * its transaction; `outcomeOf` says what to record from what the write returns.
   */
  run<T, R>(
    claim: IdempotencyKeyClaim,
    steps: {
      replay: (record: IdempotencyRecord) => Promise<R>;
      write: (keyed: KeyedWrite<T>) => Promise<R>;
      outcomeOf: (written: T) => IdempotencyOutcome;
    },
  ): Promise<R>;
}

/** Idempotency keys for the admin's non-idempotent writes, kept `ttlMs` by `now`'s clock. */
export function createIdempotencyKeys(deps: {
  db: Database;
  now: () => number;
  ttlMs: number;
}): IdempotencyKeys {
  const { db, now, ttlMs } = deps;
  // Per instance: a key in flight on another instance is held off by the write lock and the
  // table's primary key instead (the later write finds the record, or conflicts on it).
  const inFlight = new Set<string>();

  const refuseOther = (claim: IdempotencyKeyClaim, record: IdempotencyRecord) => {
    if (record.fingerprint === claim.fingerprint) return;
    throw new AppError(
      'ERR_IDEMPOTENCY_KEY_REUSED',
      'this Idempotency-Key was used for a different request (method, path, media type or body); use a new key for a new request; nothing was written',
    );
  };

  return {
    claimOf(request, bodySha256) {
      const key = parseIdempotencyKey(request.headers['idempotency-key']);
      if (key === undefined) return undefined;
      const mediaType = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      const fingerprint = createHash('sha256')
        .update(`${request.method}\n${request.url}\n${mediaType}\n${bodySha256}`)
        .digest('hex');
      const nowMs = now();
      return { caller: ADMIN_CALLER, key, fingerprint, nowMs, expiresAtMs: nowMs + ttlMs };
    },

    async run(claim, { replay, write, outcomeOf }) {
      const name = `${claim.caller}\n${claim.key}`;
      if (inFlight.has(name)) throw keyInUse();
      inFlight.add(name);
      try {
        // On the primary: a replica may not have the record yet.
        const found = await findIdempotencyRecord(
          db.write,
          claim.caller,
          claim.key,
          claim.nowMs,
        ).catch((error: unknown) => {
          throw writesUnavailable(db, error);
        });
        if (found !== undefined) {
          refuseOther(claim, found);
          return await replay(found);
        }
        return await write({
          async claim(trx) {
            // Under the write lock: a write with this key that committed since the look above
            // (on another instance, or late, after its client gave up) is found here.
            const committed = await findIdempotencyRecord(
              trx,
              claim.caller,
              claim.key,
              claim.nowMs,
            );
            if (committed !== undefined) {
              refuseOther(claim, committed);
              throw keyInUse();
            }
            await deleteExpiredIdempotencyRecords(trx, claim.nowMs);
          },
          async record(trx, written) {
            try {
              await insertIdempotencyRecord(trx, claim, outcomeOf(written));
            } catch (error) {
              // The primary key: the same key committed by a write that did not hold the lock.
              if (isDuplicateKey(error)) throw keyInUse();
              throw error;
            }
          },
        });
      } finally {
        inFlight.delete(name);
      }
    },
  };
}

/** MySQL ER_DUP_ENTRY, or SQLite's primary key constraint. */
function isDuplicateKey(error: unknown): boolean {
  const { errno, code } = error as { errno?: unknown; code?: unknown };
  return errno === 1062 || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

/** sha256 hex of a body held in memory. */
export function sha256Hex(body: string | Buffer): string {
  return createHash('sha256').update(body).digest('hex');
}

/** sha256 hex of a file (a spooled upload), read as a stream. */
export async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path), hash);
  return hash.digest('hex');
}

/** The answer to a key whose write is done but whose result a later write removed. */
export function outcomeGone(what: string): AppError {
  return new AppError(
    'ERR_IDEMPOTENCY_OUTCOME_GONE',
    `the request with this Idempotency-Key ${what}, which is gone since (deleted, or the users table replaced by a replace import or a restore); nothing was written now`,
  );
}

function keyInUse(): AppError {
  return new AppError(
    'ERR_IDEMPOTENCY_KEY_IN_USE',
    'a request with this Idempotency-Key is still being processed (or has just finished): repeat it shortly with the same key to get its answer',
  );
}

/**
 * The key an `Idempotency-Key` header carries: an sf-string (RFC 8941, 3.3.3), 1 to 255
 * characters; undefined without the header. Parameters and lists are refused: the draft makes
 * the field one String item, and nothing else is meant.
 */
export function parseIdempotencyKey(header: string | string[] | undefined): string | undefined {
  if (header === undefined) return undefined;
  const text = Array.isArray(header) ? header.join(', ') : header.trim();
  const invalid = (why: string) =>
    new AppError(
      'ERR_IDEMPOTENCY_KEY_INVALID',
      `Idempotency-Key ${why}: send one quoted string of 1 to ${MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters, e.g. Idempotency-Key: "${'8e03978e-40d5-43e8-bc93-6894a57f9324'}"; nothing was written`,
    );
  if (!text.startsWith('"')) throw invalid('is not a quoted string (a structured-field String)');
  let key = '';
  let index = 1;
  for (;;) {
    if (index >= text.length) throw invalid('has no closing quote');
    const char = text[index]!;
    index += 1;
    if (char === '"') break;
    if (char === '\\') {
      const escaped = text[index];
      if (escaped !== '"' && escaped !== '\\') {
        throw invalid('has a backslash that escapes neither " nor \\');
      }
      key += escaped;
      index += 1;
      continue;
    }
    const code = char.charCodeAt(0);
    if (code < 0x20 || code > 0x7e) throw invalid('has a character outside printable ASCII');
    key += char;
  }
  if (index !== text.length) throw invalid('has something after its closing quote');
  if (key.length === 0) throw invalid('is empty');
  if (key.length > MAX_IDEMPOTENCY_KEY_CHARS) {
    throw invalid(`is ${key.length} characters long`);
  }
  return key;
}
