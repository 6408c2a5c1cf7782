import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { brotliCompress, gzip } from 'node:zlib';
import type { Database } from '../db/database.js';
import { countUsers, readDataVersion } from '../db/users-repository.js';
import { brotliOptions, GZIP_OPTIONS } from './compression.js';
import { renderBareUsers } from './stream-users.js';

const compressBrotli = promisify(brotliCompress);
const compressGzip = promisify(gzip);

export type ContentEncoding = 'br' | 'gzip';

/**
 * The fewest bytes one user can take in the bare body:
 * `{"NAME":"x","STREET":"x","CITY":"x","STATE":"NY","USER_DATE":"01/01/01"},`. A table whose
 * rows times this is over the cap is streamed without trying to cache it first.
 */
const MIN_ROW_BYTES = 71;

/** The bare `/api` body of one data version, and its compressed copies (made on demand). */
export interface CachedApiBody {
  version: number;
  /** Strong ETag of the uncompressed body; each encoding has its own (`…-br"`, `…-gz"`). */
  etag: string;
  body: Buffer;
  encoded(encoding: ContentEncoding): Promise<Buffer>;
  etagOf(encoding: ContentEncoding | undefined): string;
  /** True when `If-None-Match` names any representation of this body. */
  matches(ifNoneMatch: string): boolean;
}

export interface ApiCache {
  /** The current bare body; undefined when it is over the cap (stream it instead). */
  current(): Promise<CachedApiBody | undefined>;
  /**
   * The body `current()` would give, when that needs no database read (the version was checked
   * less than `checkMs` ago and the body is built): the hot path, without a promise.
   */
  fresh(): CachedApiBody | undefined;
  /** Forget the known data version: the next request reads it (after a write through here). */
  invalidate(): void;
}

export interface ApiCacheOptions {
  db: Database;
  /** Largest body kept; 0 disables the cache. */
  maxBytes: number;
  /** Least time between two reads of the data version. */
  checkMs: number;
  /** A monotonic clock in ms (not the wall clock tests move). */
  now?: () => number;
}

/**
 * Keeps the serialised bare `/api` body in memory, keyed by the data version that every write
 * transaction bumps (in the database, so every instance sees every write). The version is read
 * at most once per `checkMs`; concurrent requests share one version read and one rebuild. The
 * body and its version are read from one snapshot, so a body is never filed under a version
 * it does not show.
 */
export function createApiCache(options: ApiCacheOptions): ApiCache {
  const { db, maxBytes, checkMs } = options;
  const now = options.now ?? (() => performance.now());
  let known: { version: number; checkedAt: number } | undefined;
  let checking: Promise<number> | undefined;
  let entry: CachedApiBody | undefined;
  let tooLargeVersion: number | undefined;
  let building: Promise<CachedApiBody | undefined> | undefined;

  /** The data version when it was read less than `checkMs` ago. */
  const freshVersion = (): number | undefined =>
    known !== undefined && now() - known.checkedAt < checkMs ? known.version : undefined;

  const currentVersion = (): Promise<number> => {
    const fresh = freshVersion();
    if (fresh !== undefined) return Promise.resolve(fresh);
    checking ??= db
      .read(readDataVersion)
      .then((version) => {
        known = { version, checkedAt: now() };
        return version;
      })
      .finally(() => {
        checking = undefined;
      });
    return checking;
  };

  const build = async (): Promise<CachedApiBody | undefined> => {
    const built = await db.readSnapshot(async (executor) => {
      const version = await readDataVersion(executor);
      if ((await countUsers(executor)) * MIN_ROW_BYTES > maxBytes) return { version };
      // Pages come as UTF-8 bytes: the build peaks near twice the body (the pages and their
      // concatenation), never at the UTF-16 strings of the whole table.
      const parts: Buffer[] = [];
      let bytes = 0;
      for await (const part of renderBareUsers(executor)) {
        bytes += part.length;
        if (bytes > maxBytes) return { version };
        parts.push(part);
      }
      return { version, body: Buffer.concat(parts, bytes) };
    });
    if (built.body === undefined) {
      tooLargeVersion = built.version;
      entry = undefined;
      return undefined;
    }
    entry = cachedBody(built.version, built.body);
    return entry;
  };

  return {
    async current() {
      if (maxBytes === 0) return undefined;
      const version = await currentVersion();
      if (entry?.version === version) return entry;
      if (tooLargeVersion === version) return undefined;
      building ??= build().finally(() => {
        building = undefined;
      });
      return building;
    },
    fresh() {
      const version = freshVersion();
      return version !== undefined && entry?.version === version ? entry : undefined;
    },
    invalidate() {
      known = undefined;
    },
  };
}

function cachedBody(version: number, body: Buffer): CachedApiBody {
  const base = `v${version}-${createHash('sha256').update(body).digest('base64url').slice(0, 22)}`;
  const copies = new Map<ContentEncoding, Promise<Buffer>>();
  return {
    version,
    etag: `"${base}"`,
    body,
    encoded(encoding) {
      let copy = copies.get(encoding);
      if (copy === undefined) {
        // Done once per version, off the event loop.
        copy =
          encoding === 'br'
            ? compressBrotli(body, brotliOptions(body.length))
            : compressGzip(body, GZIP_OPTIONS);
        copies.set(encoding, copy);
        // A failed compression is retried by the next request rather than cached.
        copy.catch(() => copies.delete(encoding));
      }
      return copy;
    },
    etagOf: (encoding) =>
      encoding === undefined ? `"${base}"` : `"${base}-${encoding === 'br' ? 'br' : 'gz'}"`,
    matches(ifNoneMatch) {
      return ifNoneMatch.split(',').some((candidate) => {
        const tag = candidate.trim().replace(/^W\//, '');
        return (
          tag === '*' || tag === `"${base}"` || tag === `"${base}-br"` || tag === `"${base}-gz"`
        );
      });
    },
  };
}
