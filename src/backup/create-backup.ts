import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { Database } from '../db/database.js';
import { LATEST_MIGRATION } from '../db/migrate-to-latest.js';
import { countUsers, listUsersPage } from '../db/users-repository.js';
import { USER_FIELDS } from '../users/user.js';
import {
  BACKUP_FORMAT,
  BACKUP_FORMAT_VERSION,
  backupFileName,
  type BackupEndMarker,
  type BackupManifest,
} from './backup-format.js';
import { readBackup, type BackupSummary } from './read-backup.js';

export interface CreateBackupOptions {
  /** Folder the file goes to; created when missing. */
  dir: string;
  serverName: string;
  now?: () => Date;
  /** Rows read per query inside the snapshot. */
  pageRows?: number;
  /** Called after each page is read, inside the snapshot (tests write meanwhile). */
  onPage?: (rowsSoFar: number) => Promise<void>;
}

export interface BackupResult extends BackupSummary {
  /** Absolute path of the finished file. */
  path: string;
  file: string;
}

const DEFAULT_PAGE_ROWS = 5000;

/**
 * Writes one backup of the users table to `dir` and returns what it wrote. The rows are read
 * in one consistent snapshot (`db.readSnapshot`), page by page by id, so writes committed
 * meanwhile never tear it; they are gzip-streamed to a temp file in the same folder, which is
 * fsynced, read back and verified, renamed to its final name, and the folder fsynced: a
 * returned backup is a restorable one. On failure no file is left.
 */
export async function createBackup(
  db: Database,
  options: CreateBackupOptions,
): Promise<BackupResult> {
  const now = options.now ?? (() => new Date());
  const pageRows = options.pageRows ?? DEFAULT_PAGE_ROWS;
  await mkdir(options.dir, { recursive: true });
  const createdAt = now();
  const file = backupFileName(createdAt);
  const path = join(options.dir, file);
  const temp = join(options.dir, `.${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);

  let renamed = false;
  try {
    await db.readSnapshot(
      async (snapshot, source) => {
        // The count and every page come from the same snapshot, so they must agree.
        const rowCount = await countUsers(snapshot);
        const manifest: BackupManifest = {
          format: BACKUP_FORMAT,
          formatVersion: BACKUP_FORMAT_VERSION,
          schemaVersion: LATEST_MIGRATION,
          createdAt: createdAt.toISOString(),
          sourceDialect: db.dialect,
          source,
          serverName: options.serverName,
          rowCount,
          columns: USER_FIELDS,
        };
        async function* lines(): AsyncGenerator<string> {
          yield `${JSON.stringify(manifest)}\n`;
          const hash = createHash('sha256');
          let rows = 0;
          for (let afterId = 0; ;) {
            const page = await listUsersPage(snapshot, afterId, pageRows);
            if (page.lastId === undefined) break;
            afterId = page.lastId;
            let text = '';
            for (const user of page.users) {
              text += `${JSON.stringify([user.name, user.street, user.city, user.state, user.userDate])}\n`;
            }
            hash.update(text);
            rows += page.users.length;
            yield text;
            await options.onPage?.(rows);
          }
          if (rows !== rowCount) {
            throw new Error(`snapshot inconsistent: counted ${rowCount} rows, read ${rows}`);
          }
          const end: BackupEndMarker = { end: BACKUP_FORMAT, rowCount, sha256: hash.digest('hex') };
          yield `${JSON.stringify(end)}\n`;
        }
        await pipeline(
          Readable.from(lines()),
          createGzip(),
          createWriteStream(temp, { flags: 'wx', mode: 0o640 }),
        );
      },
      { holdOffSwaps: true },
    );
    // fsync through a new descriptor flushes the file's data all the same (it is per file).
    await syncPath(temp);
    // Read back before the rename: a file that fails its own check never takes a backup's name
    // (nor a slot in retention).
    const summary = await readBackup(temp).catch((error: unknown) => {
      const reason = error instanceof Error ? error.message : String(error);
      throw new Error(`the backup just written failed its read-back check: ${reason}`, {
        cause: error,
      });
    });
    await rename(temp, path);
    renamed = true;
    await syncPath(options.dir);
    return { ...summary, path, file };
  } catch (error) {
    await rm(renamed ? path : temp, { force: true });
    throw error;
  }
}

/** fsync: a file's data, or (for a folder) its entries, so a rename survives a crash. */
async function syncPath(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
