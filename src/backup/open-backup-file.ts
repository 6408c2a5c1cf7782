import { constants, type Stats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { AppError } from '../errors.js';

export interface OpenBackupOptions {
  /**
   * Follow a symbolic link at `path` itself: an operator's own path on the command line. Off
   * for names in BACKUP_DIR, where a link could lead a restore anywhere on the machine.
   */
  followSymlinks?: boolean;
}

/** A backup file, open: a regular file that starts like gzip, read only through `handle`. */
export interface BackupFile {
  path: string;
  handle: FileHandle;
  bytes: number;
}

const GZIP_MAGIC = [0x1f, 0x8b];

/** Builds the ERR_BACKUP_INVALID for `path`: every refusal names the file and the reason. */
export function invalidBackup(
  path: string,
  reason: string,
  options: { cause?: unknown; errors?: readonly string[] } = {},
): AppError {
  return new AppError(
    'ERR_BACKUP_INVALID',
    `${path} is not a valid users-api backup: ${reason}`,
    options,
  );
}

/**
 * open() flags for reading a file in BACKUP_DIR: never through a symbolic link (unless
 * `followSymlinks`), and never waiting (O_NONBLOCK: a FIFO opens at once, to be refused after
 * fstat, instead of blocking a libuv thread until a writer comes). Reads of a regular file
 * ignore O_NONBLOCK. O_NOCTTY: a terminal must not become the process's controlling terminal.
 */
export function backupDirReadFlags(followSymlinks: boolean): number {
  const { O_RDONLY, O_NONBLOCK, O_NOFOLLOW, O_NOCTTY } = constants;
  return O_RDONLY | O_NONBLOCK | O_NOCTTY | (followSymlinks ? 0 : O_NOFOLLOW);
}

/**
 * Opens `path` for reading as a backup, or throws ERR_BACKUP_NOT_FOUND / ERR_BACKUP_INVALID. Only
 * a regular file is accepted, checked on the opened handle (fstat, so no race with the name): a
 * symbolic link is refused unless `followSymlinks`, a FIFO, device or folder always. The
 * caller reads through the handle and closes it.
 */
export async function openBackupFile(
  path: string,
  options: OpenBackupOptions = {},
): Promise<BackupFile> {
  let handle: FileHandle;
  try {
    handle = await open(path, backupDirReadFlags(options.followSymlinks === true));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new AppError('ERR_BACKUP_NOT_FOUND', `file not found: ${path}`);
    if (code === 'ELOOP' && options.followSymlinks !== true) {
      throw invalidBackup(
        path,
        'it is a symbolic link; only regular files in the backups folder are read (the folder itself may be a link)',
      );
    }
    // What open() says of a socket, or of a device file with no device behind it.
    if (code === 'ENXIO') throw invalidBackup(path, 'it is not a regular file');
    throw error;
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw invalidBackup(path, `it is ${kindOf(stats)}, not a regular file`);
    if (stats.size === 0) throw invalidBackup(path, 'the file is empty');
    const head = Buffer.alloc(2);
    const { bytesRead } = await handle.read(head, 0, 2, 0);
    if (bytesRead < 2 || head[0] !== GZIP_MAGIC[0] || head[1] !== GZIP_MAGIC[1]) {
      throw invalidBackup(
        path,
        'it is not gzip-compressed (a backup is the .ndjson.gz file `users-api backup` writes; CSV, JSON and NDJSON files are loaded with `users-api import`)',
      );
    }
    return { path, handle, bytes: stats.size };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

function kindOf(stats: Stats): string {
  if (stats.isDirectory()) return 'a directory';
  if (stats.isFIFO()) return 'a FIFO';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  if (stats.isSocket()) return 'a socket';
  return 'an unknown kind of file';
}
