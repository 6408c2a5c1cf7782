import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Database } from '../db/database.js';
import { writeBackupStatus } from './backup-status.js';
import { createBackup, type BackupResult, type CreateBackupOptions } from './create-backup.js';
import { selectExpiredBackups } from './select-expired-backups.js';

export interface TakeBackupOptions extends CreateBackupOptions {
  /** Keep this many newest backups in `dir` and delete the rest; undefined keeps all. */
  keep?: number | undefined;
  /** Hears each verified backup (the service's metric). */
  succeeded?: (at: Date) => void;
}

export interface TakenBackup extends BackupResult {
  /** Files retention deleted, oldest last. */
  deleted: string[];
}

/**
 * One backup run: write and verify a backup, record it in the status file, then apply
 * retention. Retention runs only after a verified backup, and never deletes that backup: a
 * failed run throws before deleting anything, so the newest good backup always survives it.
 */
export async function takeBackup(db: Database, options: TakeBackupOptions): Promise<TakenBackup> {
  const backup = await createBackup(db, options);
  const finishedAt = (options.now ?? (() => new Date()))();
  await writeBackupStatus(options.dir, {
    at: finishedAt.toISOString(),
    file: backup.file,
    rows: backup.rows,
  });
  options.succeeded?.(finishedAt);
  const deleted =
    options.keep === undefined
      ? []
      : selectExpiredBackups(await readdir(options.dir), options.keep, backup.file);
  for (const name of deleted) await rm(join(options.dir, name), { force: true });
  await removeAbandonedTempFiles(options.dir, finishedAt);
  return { ...backup, deleted };
}

/** A backup still being written touches its temp file all the time; a day-old one was abandoned. */
const ABANDONED_AFTER_MS = 24 * 3_600_000;
const TEMP_FILE_PATTERN = /^\.users-.*\.tmp$/;

/** Temp files a run killed mid-write left behind (a crash, a SIGKILL) would pile up otherwise. */
async function removeAbandonedTempFiles(dir: string, now: Date): Promise<void> {
  for (const name of await readdir(dir)) {
    if (!TEMP_FILE_PATTERN.test(name)) continue;
    const path = join(dir, name);
    const modified = await stat(path).then(
      (stats) => stats.mtimeMs,
      () => undefined,
    );
    if (modified !== undefined && now.getTime() - modified > ABANDONED_AFTER_MS) {
      await rm(path, { force: true });
    }
  }
}
