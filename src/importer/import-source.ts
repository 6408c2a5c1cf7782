import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { extname } from 'node:path';
import { AppError, type ErrorCode } from '../errors.js';

export const IMPORT_FORMATS = ['csv', 'json', 'ndjson'] as const;
export type ImportFormat = (typeof IMPORT_FORMATS)[number];

/** Where an import reads from. `open` is called only once the import needs the bytes. */
export interface ImportSource {
  format: ImportFormat;
  open(): AsyncIterable<Buffer>;
}

const FORMAT_BY_EXTENSION: Record<string, ImportFormat> = {
  '.csv': 'csv',
  '.json': 'json',
  '.ndjson': 'ndjson',
  '.jsonl': 'ndjson',
};

/** The import format a file name implies, or undefined for an unknown extension. */
export function formatOfFileName(path: string): ImportFormat | undefined {
  return FORMAT_BY_EXTENSION[extname(path).toLowerCase()];
}

/**
 * Fails unless `path` is a regular file this process can read: the CLI checks its argument
 * before it touches the database, so a typo is never reported as "the table is not empty".
 */
export async function checkImportFile(path: string): Promise<void> {
  await (await openImportFile(path, 'ERR_IMPORT_FILE_NOT_FOUND')).close();
}

/**
 * A file on disk as an import source. A missing file is reported with `notFoundCode`: the
 * caller knows whether that is the user's mistake (a CLI argument) or the operator's (DATA_FILE).
 */
export function fileImportSource(
  path: string,
  format: ImportFormat,
  notFoundCode: ErrorCode = 'ERR_IMPORT_FILE_NOT_FOUND',
): ImportSource {
  return {
    format,
    async *open() {
      const handle = await openImportFile(path, notFoundCode);
      const stream = handle.createReadStream({ highWaterMark: 256 * 1024 });
      try {
        for await (const chunk of stream) yield chunk as Buffer;
      } catch (error) {
        throw unreadable(path, notFoundCode, error);
      } finally {
        stream.destroy();
      }
    },
  };
}

/** Opens `path` for reading if it is a regular file; see fileImportSource for `notFoundCode`. */
async function openImportFile(path: string, notFoundCode: ErrorCode): Promise<FileHandle> {
  let handle;
  try {
    // Non-blocking: opening a FIFO for reading would wait for a writer forever.
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      const detail = isDataFile(notFoundCode)
        ? 'the configured DATA_FILE does not exist on this server'
        : `file not found: ${path}`;
      throw new AppError(notFoundCode, detail);
    }
    throw unreadable(path, notFoundCode, error);
  }
  try {
    if ((await handle.stat()).isFile()) return handle;
    const shown = isDataFile(notFoundCode) ? 'the configured DATA_FILE' : path;
    throw new AppError('ERR_IMPORT_BAD_FILE', `cannot import ${shown}: not a regular file`);
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/** The operator's DATA_FILE is a server detail: its path is not for clients. */
function isDataFile(notFoundCode: ErrorCode): boolean {
  return notFoundCode === 'ERR_IMPORT_DATA_FILE_MISSING';
}

/** A file that cannot be read: the caller's mistake for a named file, the server's for DATA_FILE. */
function unreadable(path: string, notFoundCode: ErrorCode, error: unknown): AppError {
  const code = (error as NodeJS.ErrnoException).code ?? 'error';
  return isDataFile(notFoundCode)
    ? new AppError(
        'ERR_STORAGE_FAILED',
        `the configured DATA_FILE cannot be read on this server: ${code}`,
        { cause: error },
      )
    : new AppError('ERR_IMPORT_BAD_FILE', `cannot read ${path}: ${code}`, { cause: error });
}
