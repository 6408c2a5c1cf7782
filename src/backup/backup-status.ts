import { randomBytes } from 'node:crypto';
import { open, rename, rm, stat, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { backupDirReadFlags } from './open-backup-file.js';

/** File in the backups folder that names the last verified backup. */
export const BACKUP_STATUS_FILE = 'last-success.json';

export interface BackupStatus {
  /** ISO 8601: when the backup finished and was verified. */
  at: string;
  file: string;
  rows: number;
}

/**
 * Records a verified backup in `dir/last-success.json`, replaced atomically (temp + rename).
 * The service reads it for `users_backup_last_success_timestamp_seconds`, so a scheduler
 * running as a separate process (the compose sidecar) still feeds the alert.
 */
export async function writeBackupStatus(dir: string, status: BackupStatus): Promise<void> {
  const temp = join(dir, `.${BACKUP_STATUS_FILE}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFile(temp, `${JSON.stringify(status)}\n`, { mode: 0o640 });
    await rename(temp, join(dir, BACKUP_STATUS_FILE));
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
}

/** Far more than a status line; a bigger file is not one writeBackupStatus wrote. */
const MAX_STATUS_BYTES = 64 * 1024;

/**
 * Unix seconds of the last verified backup the status file records; undefined when none. Read
 * on every metrics scrape, so only the regular file writeBackupStatus renames into place is read
 * (a FIFO there would hold each scrape, and a libuv thread, for ever): anything else throws.
 */
export async function readBackupStatus(dir: string): Promise<number | undefined> {
  const record = await readBackupRecord(dir);
  if (record === undefined) return undefined;
  const at = Date.parse(record.at);
  return Number.isFinite(at) ? at / 1000 : undefined;
}

/**
 * The last verified backup as the status file records it, with the backup file's size now
 * (undefined when the file is gone); undefined when no status file exists or its time is bad.
 */
export async function readBackupRecord(
  dir: string,
): Promise<(BackupStatus & { bytes: number | undefined }) | undefined> {
  const path = join(dir, BACKUP_STATUS_FILE);
  let handle;
  try {
    handle = await open(path, backupDirReadFlags(false));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  let text: string;
  try {
    const stats = await handle.stat();
    if (!stats.isFile() || stats.size > MAX_STATUS_BYTES) {
      throw new Error(`${path} is not a backup status file`);
    }
    text = await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
  const status = JSON.parse(text) as Partial<BackupStatus>;
  if (!Number.isFinite(Date.parse(status.at ?? ''))) return undefined;
  const file = typeof status.file === 'string' ? basename(status.file) : '';
  return {
    at: status.at!,
    file,
    rows: typeof status.rows === 'number' ? status.rows : 0,
    // Only a name inside the folder is looked at (basename), and only its size is read.
    bytes: file === '' ? undefined : await fileSize(join(dir, file)),
  };
}

async function fileSize(path: string): Promise<number | undefined> {
  try {
    const stats = await stat(path);
    return stats.isFile() ? stats.size : undefined;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}
