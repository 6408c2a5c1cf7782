import { isBackupFileName } from './backup-format.js';

/**
 * Which backup files retention deletes: every backup file name beyond the `keep` newest (names
 * sort by time). `newest` (the backup just written and verified) is never among them, whatever
 * the names say. Other files in the folder are never selected.
 */
export function selectExpiredBackups(
  names: readonly string[],
  keep: number,
  newest: string,
): string[] {
  const backups = names
    .filter((name) => isBackupFileName(name))
    .sort()
    .reverse();
  return backups.slice(Math.max(keep, 1)).filter((name) => name !== newest);
}
