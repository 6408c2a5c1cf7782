/**
 * The backup file format, version 1: a gzip-compressed NDJSON file.
 *
 * - line 1, the manifest: `{"format":"users-api-backup","formatVersion":1,…,"rowCount":n}`;
 * - lines 2…n+1, one user each, in load order: `["NAME","STREET","CITY","STATE","USER_DATE"]`,
 *   written by `JSON.stringify` (so the same rows give the same bytes on every dialect);
 * - the last line, the end marker: `{"end":"users-api-backup","rowCount":n,"sha256":"…"}`, the
 *   SHA-256 of the row lines exactly as stored, each with its LF (the canonical row stream).
 *
 * The checksum is known only once every row is written, so it closes the file instead of
 * opening it: the file is written in one pass with flat memory. gzip's own CRC-32 catches a
 * damaged byte before the checksum does; the end marker catches a file cut at a gzip boundary.
 */
export const BACKUP_FORMAT = 'users-api-backup';
export const BACKUP_FORMAT_VERSION = 1;

export interface BackupManifest {
  format: typeof BACKUP_FORMAT;
  formatVersion: number;
  /** The newest migration of the database it was taken from. */
  schemaVersion: string;
  /** ISO 8601, UTC. */
  createdAt: string;
  sourceDialect: 'sqlite' | 'mysql';
  /** Where the snapshot was read: `primary` or a replica's host:port. */
  source: string;
  /** SERVER_NAME of the process that took it. */
  serverName: string;
  rowCount: number;
  columns: readonly string[];
}

export interface BackupEndMarker {
  end: typeof BACKUP_FORMAT;
  rowCount: number;
  sha256: string;
}

/** `users-20250101T000000.000Z.ndjson.gz`: sorts by time; milliseconds keep two apart. */
export function backupFileName(at: Date): string {
  return `users-${at.toISOString().replace(/[-:]/g, '')}.ndjson.gz`;
}

const FILE_NAME_PATTERN = /^users-\d{8}T\d{6}\.\d{3}Z\.ndjson\.gz$/;

/** Whether `name` is a backup file name (temp files and anything else are not). */
export function isBackupFileName(name: string): boolean {
  return FILE_NAME_PATTERN.test(name);
}
