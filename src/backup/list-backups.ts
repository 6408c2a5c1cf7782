import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { AppError } from '../errors.js';
import { isBackupFileName, type BackupManifest } from './backup-format.js';
import { readBackup } from './read-backup.js';

export type BackupListing =
  { file: string; bytes: number; manifest: BackupManifest } | { file: string; problem: string };

/**
 * The backups in `dir`, newest first, each with its manifest (read from the first line only:
 * listing stays cheap however large the files are; `users-api verify` checks a whole file).
 * A file whose manifest cannot be read, or a name that is not a regular file (a symbolic link,
 * a FIFO, a folder), is listed with the problem rather than hidden: the operator sees why it
 * cannot be restored. A missing folder is empty.
 */
export async function listBackups(dir: string): Promise<BackupListing[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  const files = names
    .filter((name) => isBackupFileName(name))
    .sort()
    .reverse();
  const listings: BackupListing[] = [];
  for (const file of files) {
    try {
      const { manifest, bytes } = await readBackup(join(dir, file), { manifestOnly: true });
      listings.push({ file, bytes, manifest });
    } catch (error) {
      // One file the server cannot open (EACCES, EIO) is that file's problem, not the list's.
      const code = (error as NodeJS.ErrnoException).code;
      if (error instanceof AppError) listings.push({ file, problem: error.message });
      else if (typeof code === 'string')
        listings.push({ file, problem: `cannot be read: ${code}` });
      else throw error;
    }
  }
  return listings;
}
