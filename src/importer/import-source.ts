import { open } from 'node:fs/promises';
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
      // The operator's DATA_FILE is a server detail: its path is not for clients, and a file
      // the server cannot read is not their mistake.
      const dataFile = notFoundCode === 'ERR_IMPORT_DATA_FILE_MISSING';
      const unreadable = (error: unknown) => {
        const code = (error as NodeJS.ErrnoException).code ?? 'error';
        return dataFile
          ? new AppError(
              'ERR_STORAGE_FAILED',
              `the configured DATA_FILE cannot be read on this server: ${code}`,
              { cause: error },
            )
          : new AppError('ERR_IMPORT_BAD_FILE', `cannot read ${path}: ${code}`, { cause: error });
      };
      let handle;
      try {
        handle = await open(path, 'r');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
          const detail = dataFile
            ? 'the configured DATA_FILE does not exist on this server'
            : `file not found: ${path}`;
          throw new AppError(notFoundCode, detail);
        }
        throw unreadable(error);
      }
      const stream = handle.createReadStream({ highWaterMark: 256 * 1024 });
      try {
        for await (const chunk of stream) yield chunk as Buffer;
      } catch (error) {
        throw unreadable(error);
      } finally {
        stream.destroy();
      }
    },
  };
}
