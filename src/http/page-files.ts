import { randomBytes } from 'node:crypto';
import { close as closeFd, open as openFd } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import { GZIP_OPTIONS } from './compression.js';

const compressGzip = promisify(gzip);

/** One page of a bare `/api` body on disk by content hash: its JSON, and a gzip member once made. */
export interface PageFile {
  hash: string;
  /** The page's JSON (rows, comma-separated, no brackets). */
  path: string;
  bytes: number;
  /**
   * The same bytes as one gzip member (members concatenate into a valid gzip stream), once a
   * gzip request asked for it (`gzip`): most pages a write makes are never sent compressed.
   */
  gzip?: { path: string; bytes: number } | undefined;
}

/** A file descriptor to read a page file with (positional reads); `done` when finished. */
export interface PageDescriptor {
  fd: number;
  /** Closes the descriptor when it was opened for this reader alone; else nothing. */
  done(): void;
}

/**
 * Descriptors kept open at most (JSON and gzip files together; 1,000 per million users).
 * Past this a reader opens a file for its own read and closes it after.
 */
export const MAX_CACHED_DESCRIPTORS = 4096;

/**
 * Page files of one instance, content-addressed (`<sha256>.json`, `<sha256>.<n>.json.gz`), each written
 * to a temp name and renamed, so a file under its final name is always whole. Counted references
 * (a version holds each of its pages once): a file is deleted when the last one goes.
 */
export interface PageFiles {
  readonly dir: string;
  /** Writes the page unless it is on disk already, and holds it once more. */
  hold(hash: string, json: Buffer): Promise<PageFile>;
  /** Holds a page already held by someone (a version being reused). */
  holdAgain(page: PageFile): void;
  /** Drops one hold; the last one closes its descriptors and deletes the files. */
  release(page: PageFile): void;
  /**
   * Makes a held page's gzip member unless it is made (once, for every version holding the
   * page; compressed on the thread pool): `page.gzip` is set when this resolves.
   */
  gzip(page: PageFile): Promise<void>;
  /**
   * A descriptor of a held page's JSON (or gzip) file: opened once and kept until the page's
   * last hold goes (a reader holds its version, which holds its pages), so a body is read with
   * positional reads on open descriptors, not an open and close per page and request.
   */
  descriptor(page: PageFile, gzip: boolean): PageDescriptor | Promise<PageDescriptor>;
  /** Descriptors kept open now. */
  openDescriptors(): number;
  /** Bytes on disk now (JSON and gzip copies). */
  diskBytes(): number;
  /** Deletes every file of this instance. */
  close(): Promise<void>;
}

/**
 * Opens this process's page folder under `parent` (`run-<pid>-<time>`), after deleting what an
 * earlier run of this instance left there (a killed process's folder: its pid is gone, or is
 * ours now). Nothing of an earlier run is reused, so nothing half-written can be served.
 */
export async function openPageFiles(parent: string, pid = process.pid): Promise<PageFiles> {
  await mkdir(parent, { recursive: true });
  for (const entry of await readdir(parent)) {
    const owner = /^run-(\d+)-\d+$/.exec(entry)?.[1];
    if (owner === undefined) continue;
    if (Number(owner) === pid || !isAlive(Number(owner))) {
      await rm(join(parent, entry), { recursive: true, force: true });
    }
  }
  const dir = join(parent, `run-${pid}-${Date.now()}`);
  await mkdir(dir, { recursive: true });
  const pages = new Map<string, Entry>();
  /** Page writes under way, also of pages no longer held: close waits for them. */
  const writes = new Set<Promise<void>>();
  let closing = false;
  let diskBytes = 0;
  let cachedDescriptors = 0;
  /** Gzip members get a name of their own each, so a late unlink never hits a newer member. */
  let members = 0;

  /** Closes an entry's kept descriptors (its last hold is gone: no reader is reading). */
  const closeDescriptors = (entry: Entry) => {
    for (const kept of [entry.json, entry.gzip]) {
      if (kept === undefined) continue;
      cachedDescriptors -= 1;
      // A failed open has nothing to close; a failed close leaves nothing to do.
      void kept.opening.then(({ fd }) => closeFd(fd, noop), noop);
    }
    entry.json = undefined;
    entry.gzip = undefined;
  };

  /** Runs `write` to its end before close removes the folder. */
  const tracked = (write: Promise<void>) => {
    writes.add(write);
    void write.catch(noop).finally(() => writes.delete(write));
    return write;
  };

  const writeAtomically = async (path: string, data: Buffer) => {
    const temp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await writeFile(temp, data);
      await rename(temp, path);
    } catch (error) {
      await unlink(temp).catch(() => undefined); // best effort: the write already failed
      throw error;
    }
  };

  return {
    dir,
    async hold(hash, json) {
      // A build still running when the instance closes must not write into a folder going away.
      if (closing) throw new Error('the page files are closed');
      const known = pages.get(hash);
      if (known !== undefined) {
        known.holds += 1;
        try {
          await known.writing;
        } catch (error) {
          known.holds -= 1;
          throw error;
        }
        return known.file;
      }
      const file: PageFile = { hash, path: join(dir, `${hash}.json`), bytes: json.length };
      const entry: Entry = { file, holds: 1 };
      entry.writing = tracked(
        (async () => {
          await writeAtomically(file.path, json);
          diskBytes += json.length;
        })(),
      );
      pages.set(hash, entry);
      try {
        await entry.writing;
      } catch (error) {
        pages.delete(hash);
        await unlink(file.path).catch(noop);
        throw error;
      }
      return file;
    },
    holdAgain(page) {
      const entry = pages.get(page.hash);
      if (entry === undefined) throw new Error(`page ${page.hash} is not held`);
      entry.holds += 1;
    },
    release(page) {
      const entry = pages.get(page.hash);
      if (entry === undefined) return;
      entry.holds -= 1;
      if (entry.holds > 0) return;
      pages.delete(page.hash);
      closeDescriptors(entry);
      diskBytes -= page.bytes + (page.gzip?.bytes ?? 0);
      // A failed unlink leaves a file behind until the folder is removed at close or restart. A
      // member still being made is deleted when it is done (gzip).
      const paths = [page.path, ...(page.gzip === undefined ? [] : [page.gzip.path])];
      void Promise.all(paths.map((path) => unlink(path).catch(noop)));
    },
    gzip(page) {
      const entry = pages.get(page.hash);
      if (entry === undefined) return Promise.reject(new Error(`page ${page.hash} is not held`));
      if (page.gzip !== undefined) return Promise.resolve();
      entry.zipping ??= tracked(
        (async () => {
          const zipped = await compressGzip(await readFile(page.path), GZIP_OPTIONS);
          members += 1;
          const path = join(dir, `${page.hash}.${members}.json.gz`);
          await writeAtomically(path, zipped);
          if (pages.get(page.hash) !== entry) {
            await unlink(path).catch(noop); // released meanwhile
            return;
          }
          page.gzip = { path, bytes: zipped.length };
          diskBytes += zipped.length;
        })(),
      );
      // A failed member is made again by the next request that asks.
      const zipping = entry.zipping;
      zipping.catch(() => {
        if (entry.zipping === zipping) entry.zipping = undefined;
      });
      return zipping;
    },
    descriptor(page, gzip) {
      const entry = pages.get(page.hash);
      const kept = gzip ? entry?.gzip : entry?.json;
      if (kept !== undefined) return kept.ready ?? kept.opening;
      const path = gzip ? page.gzip?.path : page.path;
      if (path === undefined)
        return Promise.reject(new Error(`page ${page.hash} has no gzip member`));
      if (entry === undefined || cachedDescriptors >= MAX_CACHED_DESCRIPTORS) {
        return openReadOnly(path).then((fd) => ({ fd, done: () => closeFd(fd, noop) }));
      }
      const keeping: Kept = {
        opening: openReadOnly(path).then((fd) => {
          keeping.ready = { fd, done: noop };
          return keeping.ready;
        }),
      };
      cachedDescriptors += 1;
      if (gzip) entry.gzip = keeping;
      else entry.json = keeping;
      // A failed open is not kept: the next reader tries again.
      keeping.opening.catch(() => {
        if ((gzip ? entry.gzip : entry.json) !== keeping) return;
        cachedDescriptors -= 1;
        if (gzip) entry.gzip = undefined;
        else entry.json = undefined;
      });
      return keeping.opening;
    },
    openDescriptors: () => cachedDescriptors,
    diskBytes: () => diskBytes,
    async close() {
      // A build that was cut short may still be writing a page: removing the folder under it
      // fails with ENOTEMPTY, so the folder goes after every write has settled.
      closing = true;
      while (writes.size > 0) await Promise.all([...writes].map((write) => write.catch(noop)));
      for (const entry of pages.values()) closeDescriptors(entry);
      pages.clear();
      diskBytes = 0;
      await rm(dir, { recursive: true, force: true, maxRetries: 3, retryDelay: 50 });
    },
  };
}

interface Entry {
  file: PageFile;
  holds: number;
  writing?: Promise<void>;
  /** Its gzip member being made. */
  zipping?: Promise<void> | undefined;
  /** The JSON file's kept descriptor, once a reader asked for it. */
  json?: Kept | undefined;
  /** The gzip file's kept descriptor. */
  gzip?: Kept | undefined;
}

/** A kept descriptor: being opened, then `ready` (readers take it without a promise). */
interface Kept {
  opening: Promise<PageDescriptor>;
  ready?: PageDescriptor;
}

function openReadOnly(path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    openFd(path, 'r', (error, fd) => (error === null ? resolve(fd) : reject(error)));
  });
}

function noop(): void {
  // A file already gone is what the caller wanted.
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, owned by someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
