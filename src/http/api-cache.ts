import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { brotliCompress, gzip, gzipSync } from 'node:zlib';
import type { Database, DatabaseExecutor } from '../db/database.js';
import {
  countUsers,
  readDataVersion,
  readMaxUserId,
  readNextUserId,
  readUserIdsInRange,
  readUsersJsonByIds,
  readUsersJsonRange,
} from '../db/users-repository.js';
import { brotliOptions, GZIP_OPTIONS } from './compression.js';
import { openPageFiles, type PageDescriptor, type PageFile, type PageFiles } from './page-files.js';
import { idsBefore, indexPageRows, rowStarts, spliceRows, type PageRows } from './page-rows.js';

const compressBrotli = promisify(brotliCompress);
const compressGzip = promisify(gzip);

export type ContentEncoding = 'br' | 'gzip';

/**
 * The fewest bytes one user can take in the bare body:
 * `{"NAME":"x","STREET":"x","CITY":"x","STATE":"NY","USER_DATE":"01/01/01"},`. A table whose
 * rows times this is over the memory cap goes to page files without trying memory first.
 */
const MIN_ROW_BYTES = 71;

/** Ids per page: page k holds the users with ids in (k × PAGE_IDS, (k + 1) × PAGE_IDS]. */
export const PAGE_IDS = 2000;

/**
 * A change that re-renders at most this many pages is waited for by the request that finds it
 * (tens of ms: single-user writes splice their pages); a larger one is built in the background
 * while requests stream from the database. At 100 writes/s on 1,000,000 users a build covers
 * the 10–20 writes made while the previous one ran: with 8 here those requests streamed the
 * whole table from the database, and /api fell to 1 req/s. The same bound holds for missing gzip
 * members of page files: up to it a gzip request waits for them, past it gets identity.
 */
const WAIT_FOR_PAGES = 64;
/** Gzip members of page files made at once for one version. */
const GZIP_AT_ONCE = 2;

/**
 * A memory body up to this size is joined into one buffer per version (one write per response,
 * as small bodies are sent by the thousand); a larger one is written as its list of pages.
 */
const JOIN_BYTES = 1024 * 1024;

/** Data versions whose changed ids are remembered (noteChange): more is a full re-render. */
const REMEMBERED_CHANGES = 1024;

/** A failed page-file build (a full disk) is retried after this long, or at the next version. */
const RETRY_FAILED_BUILD_MS = 30_000;

/** A run of bytes in a body: from memory, or a whole page file (read by descriptor). */
export type Segment =
  | { bytes: Buffer }
  | { path: string; length: number; descriptor(): PageDescriptor | Promise<PageDescriptor> };

/** One representation of a body, held open (its files kept) until `release`. */
export interface OpenBody {
  length: number;
  segments: readonly Segment[];
  release(): void;
}

/**
 * A body in memory as the buffers to write, in order (`[`, the pages with `,` between, `]`):
 * a new version shares every page it did not change with the old one, so nothing is copied per
 * version, and a response goes out in one corked writev. A body up to JOIN_BYTES is one buffer.
 */
export interface MemoryBody {
  chunks: readonly Buffer[];
  length: number;
}

/** The bare `/api` body of one data version, in memory or in page files. */
export interface ApiBody {
  version: number;
  /**
   * Strong ETag of the uncompressed body: `"v<version>-<hash of the page hashes>"`, the same on
   * every instance for the same data; each encoding has its own (`…-br"`, `…-gz"`).
   */
  etag: string;
  /** The uncompressed body when it is kept in memory (the fast path's case). */
  memory: MemoryBody | undefined;
  /** Whether this body is sent in `encoding` (page files: gzip, not br). */
  offers(encoding: ContentEncoding): boolean;
  /** The bytes of one representation; identity when `encoding` is undefined. */
  open(encoding: ContentEncoding | undefined): Promise<OpenBody>;
  etagOf(encoding: ContentEncoding | undefined): string;
  /** True when `If-None-Match` names any representation of this body. */
  matches(ifNoneMatch: string): boolean;
}

export interface ApiCache {
  /**
   * The current bare body; undefined when it cannot be served from memory or page files right
   * now (being built, over the cap with no page folder, a failed build): stream it instead.
   */
  current(): Promise<ApiBody | undefined>;
  /**
   * The body `current()` would give, when that needs no database read (the version was checked
   * less than `checkMs` ago and the body is built): the hot path, without a promise.
   */
  fresh(): ApiBody | undefined;
  /** Forget the known data version: the next request reads it (after a write through here). */
  invalidate(): void;
  /**
   * Tells the cache, before a write through this instance commits, that data version `version`
   * changes only the users with these ids: its build re-renders only their pages (versions
   * without a note are rendered whole). Noted before the commit, so no build can see the version
   * without its note. Returns `forget`, to call when the write does not commit (the version
   * number then goes to the next write).
   */
  noteChange(version: number, ids: readonly number[]): () => void;
  /**
   * A write through this instance committed `version` (and the replicas have it): the version
   * is known at once, without a read, and its build starts now.
   */
  committed(version: number): void;
  /** Deletes the page files. */
  close(): Promise<void>;
}

/** What the cache reports about its builds (metrics, logs, tests). */
export interface ApiCacheEvents {
  built?(info: {
    version: number;
    where: 'memory' | 'files';
    pages: number;
    renderedPages: number;
    bytes: number;
    ms: number;
  }): void;
  failed?(version: number, error: unknown): void;
}

export interface ApiCacheOptions {
  db: Database;
  /** Largest body kept in memory; 0: never in memory. */
  maxBytes: number;
  /** Least time between two reads of the data version. */
  checkMs: number;
  /** Folder for page files (API_BODY_DIR); undefined: none, a larger body streams. */
  bodyDir?: string | undefined;
  /** A monotonic clock in ms (not the wall clock tests move). */
  now?: () => number;
  events?: ApiCacheEvents;
  /** Ids per page (tests use small pages). */
  pageIds?: number;
}

const OPEN = Buffer.from('[');
const COMMA = Buffer.from(',');
const CLOSE = Buffer.from(']');
const EMPTY_ARRAY = Buffer.from('[]');
// Constant gzip members for the brackets and commas between page members.
const GZIP_OPEN = gzipSync(OPEN, GZIP_OPTIONS);
const GZIP_COMMA = gzipSync(COMMA, GZIP_OPTIONS);
const GZIP_CLOSE = gzipSync(CLOSE, GZIP_OPTIONS);
const GZIP_EMPTY_ARRAY = gzipSync(EMPTY_ARRAY, GZIP_OPTIONS);

/**
 * A page of a built version: its hash and where its bytes are. A page in memory is shared by
 * every version that did not change it, and so is its gzip member (made at the first gzip
 * request that needs it). A page a single-user write has touched keeps where its rows are
 * (`rows`), so the next write to it changes its bytes in place of rendering it again.
 */
type Page = MemoryPage | { hash: string; file: PageFile; rows?: PageRows | undefined };
interface MemoryPage {
  hash: string;
  bytes: Buffer;
  gzip?: Promise<Buffer> | undefined;
  rows?: PageRows | undefined;
}

interface Built {
  version: number;
  body: ApiBody;
  /** The pages with users, by page number, in order. */
  pages: ReadonlyMap<number, Page>;
  /** Called when a newer version replaced this one: its files go when its last reader does. */
  retire(): void;
}

/**
 * The bare `/api` body per data version (bumped by every write, in the database, so every
 * instance sees every write), as pages of users by id range: each page rendered once from one
 * snapshot. Up to `maxBytes` the body is kept in memory; past it the pages are files in
 * `bodyDir` (content-addressed, with a gzip member each), and the body is sent from them. A new
 * version reuses the pages its change did not touch (noteChange) and is built in the background;
 * requests switch to it when it is complete, and until then stream from the database, so a body
 * older than the known data version is never served. The version is read at most once per
 * `checkMs`; concurrent requests share one version read and one build.
 * @see ../../docs/design-notes.md#bare-api-as-pages
 */
export function createApiCache(options: ApiCacheOptions): ApiCache {
  const { db, maxBytes, checkMs, bodyDir, events = {} } = options;
  const pageIds = options.pageIds ?? PAGE_IDS;
  const now = options.now ?? (() => performance.now());
  let known: { version: number; checkedAt: number } | undefined;
  let checking: Promise<number> | undefined;
  let served: Built | undefined;
  /** A version that is not built and will not be (over the cap with no files; failed). */
  let skipped: { version: number; at: number; retry: boolean } | undefined;
  let building: { decided: Promise<ApiBody | undefined>; finished: Promise<void> } | undefined;
  let files: Promise<PageFiles> | undefined;
  let closed = false;
  const changes = new Map<number, readonly number[]>();

  const pageFiles = (): Promise<PageFiles> => {
    if (bodyDir === undefined) return Promise.reject(new Error('no API_BODY_DIR'));
    files ??= openPageFiles(bodyDir);
    return files;
  };

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

  /**
   * The pages `version` may have changed since `base`, each with the ids changed on it, or
   * undefined: all of them.
   */
  const dirtyPages = (base: Built | undefined, version: number): DirtyPages | undefined => {
    if (base === undefined || version <= base.version) return undefined;
    const dirty: DirtyPages = new Map();
    for (let between = base.version + 1; between <= version; between += 1) {
      const ids = changes.get(between);
      if (ids === undefined) return undefined;
      for (const id of ids) {
        const index = Math.floor((id - 1) / pageIds);
        const onPage = dirty.get(index) ?? new Set();
        dirty.set(index, onPage.add(id));
      }
    }
    return dirty;
  };

  /**
   * Builds the version the snapshot shows. Resolves `decided` with the body once it is known
   * whether the request should wait (memory, or a small change) or stream (a large build).
   */
  const build = (decided: (body: ApiBody | undefined) => void): Promise<void> => {
    const started = now();
    const base = served;
    const held: PageFile[] = [];
    let version: number | undefined;
    return db
      .readSnapshot(async (executor) => {
        version = await readDataVersion(executor);
        if (base !== undefined && base.version >= version) return decided(base.body);
        const dirty = dirtyPages(base, version);
        let pageCount: number;
        let inMemory: boolean;
        let renders: number;
        if (dirty !== undefined && base !== undefined) {
          // Noted changes only (single-user writes here): the other pages are the base's, so
          // neither a count nor the highest id is read; where the body lives is the base's
          // (a memory body past the cap goes to files below). Pages past the base's end are
          // the dirty ones: a create's.
          pageCount = Number.MAX_SAFE_INTEGER;
          inMemory = base.body.memory !== undefined;
          renders = dirty.size;
        } else {
          const count = await countUsers(executor);
          const maxId = count === 0 ? 0 : await readMaxUserId(executor);
          pageCount = Math.ceil(maxId / pageIds);
          inMemory = count * MIN_ROW_BYTES <= maxBytes;
          // At most one page per user: ids may be sparse.
          renders = Math.min(pageCount, count);
        }
        if (!inMemory && bodyDir === undefined) {
          skipped = { version, at: now(), retry: false };
          return decided(undefined);
        }
        if (!inMemory && renders > WAIT_FOR_PAGES) decided(undefined);
        const state = { version, pageCount, dirty, inMemory, rendered: 0 };
        const result = await renderPages(executor, state, base, held);
        if (result === undefined) {
          skipped = { version, at: now(), retry: false };
          return decided(undefined);
        }
        switchTo(result);
        events.built?.({
          version,
          where: result.body.memory === undefined ? 'files' : 'memory',
          pages: result.pages.size,
          renderedPages: state.rendered,
          bytes: result.body.memory?.length ?? sumBytes(result.pages.values()),
          ms: now() - started,
        });
        decided(result.body);
      })
      .catch(async (error: unknown) => {
        const files = await pageFiles().catch(() => undefined);
        for (const page of held) files?.release(page);
        if (version !== undefined) skipped = { version, at: now(), retry: true };
        events.failed?.(version ?? -1, error);
        decided(undefined);
      });
  };

  /**
   * Renders every page of the snapshot (reusing `base`'s clean ones), into memory while the
   * body fits `maxBytes`, else into files (the pages so far are written out then). Undefined:
   * over the cap and no page folder.
   */
  const renderPages = async (
    executor: DatabaseExecutor,
    state: {
      version: number;
      pageCount: number;
      dirty: DirtyPages | undefined;
      inMemory: boolean;
      /** Pages read from the snapshot so far. */
      rendered: number;
    },
    base: Built | undefined,
    held: PageFile[],
  ): Promise<Built | undefined> => {
    const { version, pageCount, dirty } = state;
    const pages = new Map<number, Page>();
    let inMemory = state.inMemory;
    let memoryBytes = 0;
    let store: PageFiles | undefined;
    const pending = new Set<Promise<void>>();
    let failure: Error | undefined;
    const toFile = (index: number, { hash, bytes, rows }: MemoryPage) => {
      const writing = store!
        .hold(hash, bytes)
        .then((file) => {
          held.push(file);
          pages.set(index, { hash, file, rows });
        })
        .catch((error: unknown) => {
          failure ??=
            error instanceof Error ? error : new Error('writing a page failed', { cause: error });
        })
        .finally(() => pending.delete(writing));
      pending.add(writing);
    };
    const goToFiles = async () => {
      if (bodyDir === undefined) return false;
      store = await pageFiles();
      inMemory = false;
      pages.forEach((page, index) => {
        if ('bytes' in page) toFile(index, page);
      });
      return true;
    };
    if (!inMemory && !(await goToFiles())) return undefined;
    // Ids may be sparse (deletes; an id of 2,000,000,000 among 1,000): only pages that held or
    // may hold users are visited, and a full render seeks past empty id ranges.
    const revisit = dirty === undefined ? undefined : pagesToRevisit(base, dirty, pageCount);
    let visited = 0;
    let empty = false;
    const nextIndex = async (index: number): Promise<number | undefined> => {
      if (revisit !== undefined) return revisit[++visited];
      if (!empty) return index + 1;
      const nextId = await readNextUserId(executor, (index + 1) * pageIds);
      return nextId === undefined ? undefined : Math.floor((nextId - 1) / pageIds);
    };
    const first = revisit === undefined ? 0 : revisit[0];
    for (
      let index = first;
      index !== undefined && index < pageCount;
      index = await nextIndex(index)
    ) {
      const old = base?.pages.get(index);
      const changed = dirty?.get(index);
      let page: Page | undefined;
      if (dirty !== undefined && changed === undefined) {
        page = old;
      } else {
        const spliced =
          changed !== undefined && old !== undefined
            ? await spliceChanges(executor, index, old, changed)
            : undefined;
        page =
          spliced === undefined
            ? await renderPage(executor, index, changed !== undefined)
            : (spliced ?? undefined);
        state.rendered += 1;
        // The old page when the bytes are the same: its file is already written. Where its rows
        // are is the same too (a write that changed nothing still found them).
        if (page !== undefined && old !== undefined && old.hash === page.hash) {
          old.rows ??= page.rows;
          page = old;
        }
      }
      empty = page === undefined;
      if (page === undefined) continue;
      if (inMemory) {
        const bytes = 'bytes' in page ? page.bytes : undefined;
        if (bytes === undefined) {
          // A file page of the old version while the new one fits memory: read it again.
          const again = await readUsersJsonRange(executor, index * pageIds, (index + 1) * pageIds);
          state.rendered += 1;
          pages.set(index, { hash: page.hash, bytes: again.json, rows: page.rows });
          memoryBytes += again.json.length + 1;
        } else {
          pages.set(index, page);
          memoryBytes += bytes.length + 1;
        }
        if (memoryBytes > maxBytes && !(await goToFiles())) return undefined;
        continue;
      }
      if ('file' in page) {
        store!.holdAgain(page.file);
        held.push(page.file);
        pages.set(index, page);
      } else {
        toFile(index, page);
        // Bounded: a few pages written (and gzipped, on the thread pool) while the next renders.
        while (pending.size >= 4) await Promise.race(pending);
      }
      if (failure !== undefined) break;
    }
    await Promise.all(pending);
    if (failure !== undefined) throw failure;
    // Files are written out of order: the body's order is the page numbers'.
    const ordered = new Map([...pages].sort(([a], [b]) => a - b));
    const hashes = [...ordered.values()].map((page) => page.hash);
    const base64 = createHash('sha256').update(hashes.join(',')).digest('base64url').slice(0, 22);
    const tag = `v${version}-${base64}`;
    if (inMemory) {
      const memoryPages = [...ordered.values()].filter((page) => 'bytes' in page);
      return {
        version,
        body: memoryBody(version, tag, memoryPages),
        pages: ordered,
        retire: () => undefined,
      };
    }
    return pagedVersion(version, tag, ordered, store!, held.splice(0));
  };

  /**
   * Page `index` rendered from the snapshot; undefined when it has no users. `withRows` keeps
   * where its rows are, for a page a single-user write changed (others would carry it unused).
   */
  const renderPage = async (
    executor: DatabaseExecutor,
    index: number,
    withRows: boolean,
  ): Promise<MemoryPage | undefined> => {
    const rendered = await readUsersJsonRange(
      executor,
      index * pageIds,
      (index + 1) * pageIds,
      withRows,
    );
    if (rendered.rows === 0) return undefined;
    return {
      hash: hashOf(rendered.json),
      bytes: rendered.json,
      rows: rendered.ids === undefined ? undefined : indexPageRows(rendered.json, rendered.ids),
    };
  };

  /**
   * `old` (page `index`) with the `changed` users as the snapshot has them: its bytes copied, not
   * rendered again. A page no write touched yet has no row index: it is indexed from its bytes
   * and the ids the snapshot has on it now. `null`: no users left on it; undefined: render it.
   */
  const spliceChanges = async (
    executor: DatabaseExecutor,
    index: number,
    old: Page,
    changed: ReadonlySet<number>,
  ): Promise<MemoryPage | null | undefined> => {
    const bytes = 'bytes' in old ? old.bytes : await readFile(old.file.path);
    let rows = old.rows;
    if (rows === undefined) {
      const now = await readUserIdsInRange(executor, index * pageIds, (index + 1) * pageIds);
      const starts = rowStarts(bytes);
      const ids = idsBefore(now, changed, starts.length);
      if (ids === undefined) return undefined;
      rows = { ids, starts };
    }
    const objects = await readUsersJsonByIds(executor, [...changed]);
    const spliced = spliceRows(
      bytes,
      rows,
      new Map([...changed].map((id) => [id, objects.get(id)])),
    );
    if (spliced.rows.ids.length === 0) return null;
    return { hash: hashOf(spliced.bytes), bytes: spliced.bytes, rows: spliced.rows };
  };

  const switchTo = (next: Built) => {
    if (closed) {
      next.retire();
      return;
    }
    const previous = served;
    served = next;
    if (previous !== undefined && previous !== next) previous.retire();
    for (const version of changes.keys()) if (version <= next.version) changes.delete(version);
  };

  /** Starts a build unless one is under way; resolves as `build` decides. */
  const startBuild = (): Promise<ApiBody | undefined> => {
    if (building !== undefined) return building.decided;
    if (closed) return Promise.resolve(undefined);
    let resolve!: (body: ApiBody | undefined) => void;
    let settled = false;
    const decided = new Promise<ApiBody | undefined>((done) => {
      resolve = done;
    });
    const decide = (body: ApiBody | undefined) => {
      if (settled) return;
      settled = true;
      resolve(body);
    };
    const finished = build(decide).finally(() => {
      decide(undefined);
      building = undefined;
    });
    building = { decided, finished };
    return decided;
  };

  /**
   * The body of `version` or a newer one; undefined: stream it. A build that was under way
   * before `version` was known may show an older snapshot: then the next build, started after
   * it, is the one to wait for (never an older body than the version known).
   */
  const bodyOf = async (version: number): Promise<ApiBody | undefined> => {
    // Bounded: the second build starts after `version` was known, so its snapshot shows it.
    for (let attempt = 0; attempt < 3; attempt += 1) {
      if (served !== undefined && served.version >= version) return served.body;
      if (
        skipped?.version === version &&
        (!skipped.retry || now() - skipped.at < RETRY_FAILED_BUILD_MS)
      ) {
        return undefined;
      }
      const under = building;
      const body = await startBuild();
      if (body === undefined || body.version >= version) return body;
      await under?.finished;
    }
    return undefined;
  };

  return {
    current: () => currentVersion().then(bodyOf),
    fresh() {
      const version = freshVersion();
      return version !== undefined && served !== undefined && served.version >= version
        ? served.body
        : undefined;
    },
    invalidate() {
      known = undefined;
    },
    noteChange(version, ids) {
      const noted = [...ids];
      changes.set(version, noted);
      if (changes.size > REMEMBERED_CHANGES) {
        const oldest = changes.keys().next().value;
        if (oldest !== undefined) changes.delete(oldest);
      }
      return () => {
        if (changes.get(version) === noted) changes.delete(version);
      };
    },
    committed(version) {
      // Every version up to this one is committed: a snapshot that shows it shows them all. A
      // write through another instance after this one is seen within checkMs of it, as promised.
      if (known === undefined || known.version <= version) known = { version, checkedAt: now() };
      // Built now, while the write's answer goes out, rather than by the next reader.
      bodyOf(version).catch(() => undefined); // a failed build is reported by `events.failed`
    },
    async close() {
      closed = true;
      // A build a write started may be writing page files: the folder goes after it.
      await building?.finished;
      served?.retire();
      served = undefined;
      const opened = await files?.catch(() => undefined);
      await opened?.close();
    },
  };
}

/** Page numbers, each with the user ids a change touched on it. */
type DirtyPages = Map<number, Set<number>>;

/** In order: the pages `base` has users on, and the `dirty` ones. */
function pagesToRevisit(base: Built | undefined, dirty: DirtyPages, pageCount: number): number[] {
  const indexes = new Set(dirty.keys());
  for (const index of base?.pages.keys() ?? []) indexes.add(index);
  return [...indexes].filter((index) => index < pageCount).sort((a, b) => a - b);
}

function hashOf(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function sumBytes(pages: Iterable<Page>): number {
  let bytes = 2;
  for (const page of pages) {
    bytes += ('file' in page ? page.file.bytes : page.bytes.length) + 1;
  }
  return bytes;
}

function tagsOf(base: string) {
  const tags = {
    identity: `"${base}"`,
    br: `"${base}-br"`,
    gzip: `"${base}-gz"`,
  };
  return {
    etagOf: (encoding: ContentEncoding | undefined) => tags[encoding ?? 'identity'],
    matches: (ifNoneMatch: string) =>
      ifNoneMatch.split(',').some((candidate) => {
        const tag = candidate.trim().replace(/^W\//, '');
        return tag === '*' || tag === tags.identity || tag === tags.br || tag === tags.gzip;
      }),
  };
}

/**
 * A version in memory: its pages in order. Identity is `[`, the pages with `,` between, `]`;
 * gzip the same of gzip members (a member per page, kept with the page, so a version that changed
 * one page compresses one page); br, which cannot be concatenated, is the whole body compressed
 * once per version at the first request that takes it.
 */
function memoryBody(version: number, base: string, pages: readonly MemoryPage[]): ApiBody {
  const joined = (parts: Buffer[], open: Buffer, comma: Buffer, close: Buffer, empty: Buffer) => {
    if (parts.length === 0) return [empty];
    const chunks = [open];
    parts.forEach((part, index) => {
      if (index > 0) chunks.push(comma);
      chunks.push(part);
    });
    chunks.push(close);
    return chunks;
  };
  let chunks = joined(
    pages.map((page) => page.bytes),
    OPEN,
    COMMA,
    CLOSE,
    EMPTY_ARRAY,
  );
  const length = chunks.reduce((sum, chunk) => sum + chunk.length, 0);
  if (chunks.length > 1 && length <= JOIN_BYTES) chunks = [Buffer.concat(chunks, length)];
  const memory: MemoryBody = { chunks, length };
  const whole = Promise.resolve(asOpened(chunks));
  const copies = new Map<ContentEncoding, Promise<OpenBody>>();
  const encoded = (encoding: ContentEncoding): Promise<OpenBody> => {
    let copy = copies.get(encoding);
    if (copy === undefined) {
      // Made once per version, off the event loop.
      copy =
        encoding === 'br'
          ? compressBrotli(Buffer.concat(chunks, length), brotliOptions(length)).then((bytes) =>
              asOpened([bytes]),
            )
          : Promise.all(pages.map(gzipMember)).then((members) =>
              asOpened(joined(members, GZIP_OPEN, GZIP_COMMA, GZIP_CLOSE, GZIP_EMPTY_ARRAY)),
            );
      copies.set(encoding, copy);
      // A failed compression is retried by the next request rather than kept.
      copy.catch(() => copies.delete(encoding));
    }
    return copy;
  };
  const tags = tagsOf(base);
  return {
    version,
    etag: tags.etagOf(undefined),
    memory,
    offers: () => true,
    open: (encoding) => (encoding === undefined ? whole : encoded(encoding)),
    ...tags,
  };
}

/** Buffers in memory as an opened body (nothing to release). */
function asOpened(buffers: readonly Buffer[]): OpenBody {
  return {
    length: buffers.reduce((sum, buffer) => sum + buffer.length, 0),
    segments: buffers.map((bytes) => ({ bytes })),
    release: () => undefined,
  };
}

/** The page's gzip member, compressed once (on the thread pool) for every version sharing it. */
function gzipMember(page: MemoryPage): Promise<Buffer> {
  if (page.gzip === undefined) {
    const member = compressGzip(page.bytes, GZIP_OPTIONS);
    page.gzip = member;
    // A failed compression is retried by the next request rather than kept.
    member.catch(() => {
      if (page.gzip === member) page.gzip = undefined;
    });
  }
  return page.gzip;
}

/**
 * A version in page files. Readers hold it (`open` … `release`); once retired, its holds on the
 * page files are dropped when its last reader is done.
 */
function pagedVersion(
  version: number,
  base: string,
  pages: ReadonlyMap<number, Page>,
  store: PageFiles,
  held: PageFile[],
): Built {
  const files = [...pages.values()].flatMap((page) => ('file' in page ? [page.file] : []));
  let readers = 0;
  let retired = false;
  const drop = () => {
    for (const file of held) store.release(file);
    held.length = 0;
  };
  const segmentsOf = (encoding: ContentEncoding | undefined): Segment[] => {
    const gzip = encoding === 'gzip';
    if (files.length === 0) return [{ bytes: gzip ? GZIP_EMPTY_ARRAY : EMPTY_ARRAY }];
    const segments: Segment[] = [];
    for (const file of files) {
      const separator = segments.length === 0 ? OPEN : COMMA;
      const gzipSeparator = segments.length === 0 ? GZIP_OPEN : GZIP_COMMA;
      segments.push({ bytes: gzip ? gzipSeparator : separator });
      segments.push({
        path: gzip ? file.gzip!.path : file.path,
        length: gzip ? file.gzip!.bytes : file.bytes,
        descriptor: () => store.descriptor(file, gzip),
      });
    }
    segments.push({ bytes: gzip ? GZIP_CLOSE : CLOSE });
    return segments;
  };
  const lengthOf = (segments: Segment[]) =>
    segments.reduce(
      (sum, segment) => sum + ('bytes' in segment ? segment.bytes.length : segment.length),
      0,
    );
  const identity = segmentsOf(undefined);
  const identityLength = lengthOf(identity);
  /** The pages without a gzip member yet, until `members` has made them. */
  let unzipped = files.filter((file) => file.gzip === undefined);
  let members: Promise<{ segments: Segment[]; length: number }> | undefined;
  /**
   * The gzip copy, its missing members made first (a few at a time: the thread pool also reads
   * the pages being sent). A failure is tried again by the next request.
   */
  const gzipped = () => {
    members ??= (async () => {
      const queue = [...unzipped];
      const worker = async () => {
        for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
          await store.gzip(file);
        }
      };
      await Promise.all(Array.from({ length: GZIP_AT_ONCE }, worker));
      unzipped = [];
      const segments = segmentsOf('gzip');
      return { segments, length: lengthOf(segments) };
    })();
    const making = members;
    making.catch(() => {
      if (members === making) members = undefined;
    });
    return making;
  };
  const tags = tagsOf(base);
  const body: ApiBody = {
    version,
    etag: tags.etagOf(undefined),
    memory: undefined,
    // Gzip when its members are made or few are missing (made while the request waits); else
    // identity now, the members made meanwhile for the requests after it.
    offers(encoding) {
      if (encoding !== 'gzip') return false;
      if (unzipped.length === 0) return true;
      gzipped().catch(() => undefined); // the next request that asks tries again
      return unzipped.length <= WAIT_FOR_PAGES;
    },
    async open(encoding) {
      if (encoding === 'br') throw new Error('page files have no br copy');
      readers += 1;
      let released = false;
      const release = () => {
        if (released) return;
        released = true;
        readers -= 1;
        if (retired && readers === 0) drop();
      };
      try {
        const { segments, length } =
          encoding === 'gzip' ? await gzipped() : { segments: identity, length: identityLength };
        return { length, segments, release };
      } catch (error) {
        release();
        throw error;
      }
    },
    ...tags,
  };
  return {
    version,
    body,
    pages,
    retire() {
      retired = true;
      if (readers === 0) drop();
    },
  };
}
