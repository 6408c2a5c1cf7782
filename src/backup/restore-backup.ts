import type { Database } from '../db/database.js';
import { AppError } from '../errors.js';
import { openBackupFile, type OpenBackupOptions } from './open-backup-file.js';
import { readBackup, type BackupSummary } from './read-backup.js';

/**
 * Restores a backup file over the users table. The whole file is verified first, every row
 * against the import's rules too (a bad file changes nothing and throws ERR_BACKUP_*); then its
 * rows are streamed into a staging table and swapped in atomically (`db.replaceUsersTable`),
 * checked again on the way (a file changed since the first pass is refused, and the staging
 * rows are discarded). Both passes read one opened handle, so the name cannot be pointed at
 * another file between them. The previous table is kept as `users_prev` until the next
 * restore. Works across dialects: the file holds no SQL.
 */
export async function restoreBackup(
  db: Database,
  path: string,
  options: OpenBackupOptions = {},
): Promise<BackupSummary> {
  const file = await openBackupFile(path, options);
  try {
    const verified = await readBackup(file);
    let loaded: BackupSummary | undefined;
    await db.replaceUsersTable(
      async (insert) => {
        loaded = await readBackup(file, { batchRows: db.maxInsertRows, onRows: insert });
        if (loaded.sha256 !== verified.sha256) {
          throw new AppError('ERR_BACKUP_INVALID', `${path} changed while it was being restored`);
        }
      },
      { ifEmpty: false, keepPrevious: true },
    );
    return loaded ?? verified;
  } finally {
    await file.handle.close();
  }
}
