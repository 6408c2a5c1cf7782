import { PassThrough, Readable } from 'node:stream';
import type { Database, DatabaseExecutor } from '../db/database.js';
import { findUsers, readUsersJsonPage, type UsersQuery } from '../db/users-repository.js';
import type { UsersWriter } from './format-users.js';

/** Rows read per query while streaming: ~200 KB of JSON, a few ms of work between yields. */
export const STREAM_PAGE_ROWS = 2000;

/** Bytes buffered ahead of a slow client before the reads pause. */
const HIGH_WATER_MARK = 256 * 1024;

/**
 * Every user `query` selects, as text pages: `writer.head`, the rows page by page (a keyset
 * cursor, so each page is an index range), `writer.tail`.
 */
export async function* renderUsers(
  executor: DatabaseExecutor,
  query: UsersQuery,
  writer: UsersWriter,
  pageRows = STREAM_PAGE_ROWS,
): AsyncGenerator<string> {
  let after = query.after;
  let first = true;
  let head = writer.head;
  for (;;) {
    const page = await findUsers(executor, { ...query, after }, pageRows);
    if (page.users.length > 0) {
      yield head + writer.rows(page.users, first);
      head = '';
      first = false;
    }
    if (page.users.length < pageRows || page.last === undefined) break;
    after = page.last;
  }
  yield head + writer.tail;
}

const OPEN = Buffer.from('[');
const COMMA = Buffer.from(',');
const CLOSE = Buffer.from(']');
const EMPTY_ARRAY = Buffer.from('[]');

/**
 * The bare `/api` body (every user, load order, the contract's JSON), page by page as UTF-8 as
 * the database renders it.
 */
export async function* renderBareUsers(
  executor: DatabaseExecutor,
  pageRows = STREAM_PAGE_ROWS,
): AsyncGenerator<Buffer> {
  let afterId = 0;
  let head = OPEN;
  for (;;) {
    const page = await readUsersJsonPage(executor, afterId, pageRows);
    if (page.rows > 0) {
      yield Buffer.concat([head, page.json]);
      head = COMMA;
    }
    if (page.rows < pageRows || page.lastId === undefined) break;
    afterId = page.lastId;
  }
  yield head === OPEN ? EMPTY_ARRAY : CLOSE;
}

/** How a streamed body treats a client that stops reading. */
export interface StreamLimits {
  /** A client that takes nothing for this long is cut (STREAM_IDLE_TIMEOUT_MS). */
  idleTimeoutMs: number;
  /** Told of each cut (metrics, log). */
  cut(): void;
}

/**
 * The bare `/api` body when the cache does not hold it. A table that fits in one page is read
 * with one query (which the replica router retries elsewhere if a replica dies under it); a
 * larger one is streamed from one snapshot, from its first row again.
 */
export async function readBareUsersBody(db: Database, limits: StreamLimits): Promise<Readable> {
  const first = await db.read((executor) => readUsersJsonPage(executor, 0, STREAM_PAGE_ROWS));
  if (first.rows < STREAM_PAGE_ROWS) {
    return Readable.from([
      first.rows === 0 ? EMPTY_ARRAY : Buffer.concat([OPEN, first.json, CLOSE]),
    ]);
  }
  return openUsersStream(db, limits, (executor) => renderBareUsers(executor));
}

/**
 * Every user `query` selects, written by `writer`, as a body to send. A result that fits in one
 * page is read with one query (most filtered reads, small tables); a larger one is streamed
 * from one snapshot, from its first row again, so the body never mixes two versions of the data.
 */
export async function readUsersBody(
  db: Database,
  limits: StreamLimits,
  query: UsersQuery,
  writer: UsersWriter,
): Promise<Readable> {
  const first = await db.read((executor) => findUsers(executor, query, STREAM_PAGE_ROWS));
  if (first.users.length < STREAM_PAGE_ROWS) {
    return Readable.from([Buffer.from(writer.head + writer.rows(first.users, true) + writer.tail)]);
  }
  return openUsersStream(db, limits, (executor) => renderUsers(executor, query, writer));
}

/**
 * Streams what `render` yields from one database snapshot (`streamSnapshot`: a bounded number
 * at once, on connections of their own), with backpressure: reads pause while the client is
 * behind. Resolves with the body once the first text is ready, so a database that fails
 * before then is still a clean 503 (and the router may retry the read elsewhere). Later
 * failures cut the response: nothing can be retried once bytes have left. A client that goes
 * away, or takes nothing for `limits.idleTimeoutMs`, ends the body; the loop stops and the
 * snapshot and its connection are released.
 */
export function openUsersStream(
  db: Database,
  limits: StreamLimits,
  render: (executor: DatabaseExecutor) => AsyncIterable<string | Buffer>,
): Promise<Readable> {
  return new Promise((resolve, reject) => {
    const body = new PassThrough({ highWaterMark: HIGH_WATER_MARK });
    let started = false;
    const start = () => {
      if (started) return;
      started = true;
      resolve(body);
    };
    db.streamSnapshot(async (executor) => {
      try {
        for await (const text of render(executor)) {
          if (body.destroyed) return;
          start();
          if (!body.write(text) && !(await drainedOrClosed(body, limits.idleTimeoutMs))) {
            limits.cut();
            body.destroy(new StreamIdleError(limits.idleTimeoutMs));
            return;
          }
        }
        start();
        body.end();
      } catch (error) {
        if (!started) throw error;
        body.destroy(error instanceof Error ? error : new Error(String(error)));
      }
    }).catch(reject);
  });
}

/**
 * Resolves true when `stream` can take more or is gone (a client that left never drains), false
 * when neither happened within `idleMs`.
 */
function drainedOrClosed(stream: PassThrough, idleMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (progressed: boolean) => () => {
      clearTimeout(timer);
      stream.off('drain', moved);
      stream.off('close', moved);
      resolve(progressed);
    };
    const moved = done(true);
    const timer = setTimeout(done(false), idleMs);
    stream.on('drain', moved);
    stream.on('close', moved);
  });
}

/** Why a stream was cut: the client stopped taking the body. */
export class StreamIdleError extends Error {
  override name = 'StreamIdleError';
  constructor(idleMs: number) {
    super(`the client took nothing for ${idleMs} ms (STREAM_IDLE_TIMEOUT_MS): response cut`);
  }
}
