import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

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

/** Unix seconds of the last verified backup the status file records; undefined when none. */
export async function readBackupStatus(dir: string): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, BACKUP_STATUS_FILE), 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
  const at = Date.parse((JSON.parse(text) as Partial<BackupStatus>).at ?? '');
  return Number.isFinite(at) ? at / 1000 : undefined;
}
