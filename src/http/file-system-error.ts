import { getSystemErrorMap } from 'node:util';
import { isDatabaseFailure } from '../db/is-database-failure.js';

/** An error from a node:fs call: its errno code, the call, and (only for the log) the path. */
export interface FileSystemError extends Error {
  code: string;
  errno: number;
  syscall: string;
}

/**
 * True for an error the file system returned (permission denied, read-only, full, not a
 * folder…), as opposed to the database's (a socket errno from the driver is a database outage).
 */
export function isFileSystemError(error: unknown): error is FileSystemError {
  if (!(error instanceof Error) || isDatabaseFailure(error)) return false;
  const { code, errno, syscall } = error as Partial<FileSystemError>;
  return (
    typeof code === 'string' &&
    /^E[A-Z0-9]+$/.test(code) &&
    typeof errno === 'number' &&
    typeof syscall === 'string'
  );
}

/**
 * `EACCES (permission denied) on mkdir`: what failed, for a client to read, without the path
 * (an absolute path tells an outsider how the server is laid out; the log line has it).
 */
export function describeFileSystemError(error: FileSystemError): string {
  const text = getSystemErrorMap().get(error.errno)?.[1];
  return `${error.code}${text === undefined ? '' : ` (${text})`} on ${error.syscall}`;
}
