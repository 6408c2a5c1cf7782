import { createWriteStream } from 'node:fs';
import { lstat, mkdtemp, readdir, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../errors.js';

/** Every spool folder's name starts with this, then `<pid>@<host>-` and mkdtemp's suffix. */
const SPOOL_PREFIX = 'users-api-upload-';
const OWNED_SPOOL = /^users-api-upload-(\d+)@(.+)-[^-]{6}$/;

/**
 * Past this age a spool folder is left over whoever made it (an older release, another host on
 * a shared temp dir, a pid reused since): far beyond any upload (REQUEST_TIMEOUT_MS caps
 * receiving one at 5 min) and its import.
 */
const SPOOL_MAX_AGE_MS = 24 * 3600 * 1000;

export interface SpooledUpload {
  path: string;
  remove(): Promise<void>;
}

/**
 * Writes a request body to a private temp file, refusing it past `maxBytes`. The import then
 * reads the file at disk speed, so a slow client never holds the database's write lock.
 */
export async function spoolUpload(body: Readable, maxBytes: number): Promise<SpooledUpload> {
  const folder = await mkdtemp(join(tmpdir(), `${SPOOL_PREFIX}${process.pid}@${hostname()}-`));
  const remove = () => rm(folder, { recursive: true, force: true });
  const path = join(folder, 'upload');
  let received = 0;
  const limit = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (received > maxBytes) callback(uploadTooLarge(maxBytes));
      else callback(null, chunk);
    },
  });
  // pipe(), not pipeline(): a refused upload must not destroy the request, or its socket goes
  // with it and the client never sees the 413.
  body.pipe(limit);
  body.once('error', (error) => limit.destroy(error));
  body.once('close', () => {
    if (!body.readableEnded)
      limit.destroy(new Error('the client closed the upload before it ended'));
  });
  try {
    await pipeline(limit, createWriteStream(path, { mode: 0o600 }));
    return { path, remove };
  } catch (error) {
    body.unpipe(limit);
    await remove();
    throw error;
  }
}

export function uploadTooLarge(maxBytes: number): AppError {
  return new AppError(
    'ERR_UPLOAD_TOO_LARGE',
    `the upload is larger than MAX_UPLOAD_BYTES (${maxBytes} bytes); import big files with the CLI (users-api import FILE)`,
  );
}

/**
 * Removes the upload spool folders in the temp dir that no running upload can be using, and
 * returns their paths. Only folders this user owns: those naming this host and a process that
 * is gone (a crash mid-import leaves 13-17 MB each) or this process's pid (a container restarts
 * with the same pid), and any older than SPOOL_MAX_AGE_MS. Call it before the server accepts
 * uploads. Instances sharing a temp dir across pid namespaces (containers) must have distinct
 * host names, as containers do by default.
 */
export async function removeStaleUploadSpools(
  log: { warn(details: object, message: string): void },
  now: number = Date.now(),
): Promise<string[]> {
  const dir = tmpdir();
  const host = hostname();
  const removed: string[] = [];
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (error) {
    // Uploads will fail on their own if the temp dir is unusable; reads need not wait for it.
    log.warn({ err: error, dir }, 'could not list the temp dir for left-over upload spools');
    return removed;
  }
  for (const entry of entries) {
    // isDirectory() does not follow links: a link planted in a shared /tmp is never followed.
    if (!entry.name.startsWith(SPOOL_PREFIX) || !entry.isDirectory()) continue;
    const folder = join(dir, entry.name);
    try {
      const owned = OWNED_SPOOL.exec(entry.name);
      const pid = owned?.[2] === host ? Number(owned[1]) : undefined;
      const stale =
        (pid !== undefined && (pid === process.pid || !isRunning(pid))) ||
        now - (await lastModified(folder)) > SPOOL_MAX_AGE_MS;
      if (!stale || (await lstat(folder)).uid !== process.getuid?.()) continue;
      await rm(folder, { recursive: true, force: true });
      removed.push(folder);
    } catch (error) {
      // One folder we cannot inspect or remove must not stop the server from starting.
      log.warn({ err: error, folder }, 'could not remove a left-over upload spool folder');
    }
  }
  return removed;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it runs, as another user.
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/** The latest change to the folder or the upload in it (written to while it arrives). */
async function lastModified(folder: string): Promise<number> {
  const folderTime = (await lstat(folder)).mtimeMs;
  try {
    return Math.max(folderTime, (await lstat(join(folder, 'upload'))).mtimeMs);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return folderTime; // not begun yet
    throw error;
  }
}
