import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { AppError } from '../errors.js';
import { MAX_REPORTED_BAD_ROWS } from '../importer/validate-records.js';
import { USER_FIELDS, type RawUser, type User } from '../users/user.js';
import { validateUser } from '../users/validate-user.js';
import {
  BACKUP_FORMAT,
  BACKUP_FORMAT_VERSION,
  type BackupEndMarker,
  type BackupManifest,
} from './backup-format.js';
import {
  invalidBackup,
  openBackupFile,
  type BackupFile,
  type OpenBackupOptions,
} from './open-backup-file.js';

export interface BackupSummary {
  manifest: BackupManifest;
  rows: number;
  sha256: string;
  bytes: number;
}

export interface ReadBackupOptions extends OpenBackupOptions {
  /** Rows per `onRows` call. */
  batchRows?: number;
  /** Hears the rows in order; awaited before more is read. Omitted: rows are only checked. */
  onRows?: (users: User[]) => Promise<void>;
  /** Stop after the manifest (listing): no rows are read, nothing is checked past line 1. */
  manifestOnly?: boolean;
}

/** Longer than any manifest or row can be (5 × 255 characters); a longer line is not ours. */
const MAX_LINE_CHARS = 64 * 1024;

/**
 * Reads a backup file and checks all of it: the manifest, every row (its shape, and the rules
 * every import applies), the row count and the SHA-256 against the end marker. Throws
 * ERR_BACKUP_INVALID (not a regular file, not a backup, truncated, corrupted, rows an import
 * would refuse), ERR_BACKUP_UNSUPPORTED_VERSION (written by a newer users-api) or
 * ERR_BACKUP_NOT_FOUND, each naming the file and what is wrong with it. `source` is a path
 * (opened and closed here) or a file opened with `openBackupFile`, read from its start.
 * Streams: memory stays flat whatever the size. `onRows` hears valid rows only, but may hear
 * some before a later problem is found: a caller that writes them somewhere must discard them
 * when this throws.
 */
export async function readBackup(
  source: string | BackupFile,
  options: ReadBackupOptions = {},
): Promise<BackupSummary> {
  if (typeof source !== 'string') return readBackupFile(source, options);
  const file = await openBackupFile(source, options);
  try {
    return await readBackupFile(file, options);
  } finally {
    await file.handle.close();
  }
}

async function readBackupFile(
  file: BackupFile,
  options: ReadBackupOptions,
): Promise<BackupSummary> {
  const { path, bytes } = file;
  const invalid: Invalid = (reason, cause) => invalidBackup(path, reason, { cause });
  const batchRows = options.batchRows ?? 2000;
  const hash = createHash('sha256');
  let manifest: BackupManifest | undefined;
  let end: BackupEndMarker | undefined;
  let rows = 0;
  let lineNumber = 0;
  let batch: User[] = [];
  // Rows an import would refuse: reported only once the file proved intact (a damaged file is
  // "corrupted", not a list of odd rows), and nothing more is handed on after the first.
  let badRows = 0;
  const ruleErrors: string[] = [];

  const takeLine = async (line: string) => {
    lineNumber += 1;
    if (manifest === undefined) {
      manifest = parseManifest(line, path, invalid);
      return;
    }
    if (end !== undefined) {
      if (line !== '') throw invalid(`corrupted: data after the end marker (line ${lineNumber})`);
      return;
    }
    if (line.startsWith('{')) {
      end = parseEndMarker(line, invalid);
      return;
    }
    const checked = validateUser(parseRow(line, lineNumber, invalid));
    hash.update(line);
    hash.update('\n');
    rows += 1;
    if (!checked.ok) {
      badRows += 1;
      if (badRows <= MAX_REPORTED_BAD_ROWS) {
        for (const { field, reason } of checked.problems) {
          ruleErrors.push(`line ${lineNumber}: ${field}: ${reason}`);
        }
      }
      return;
    }
    if (badRows > 0) return;
    batch.push(checked.user);
    if (batch.length >= batchRows) {
      const full = batch;
      batch = [];
      await options.onRows?.(full);
    }
  };

  const decoder = new TextDecoder('utf-8', { fatal: true });
  let pending = '';
  // pipeline, not pipe: a read error of the file reaches the loop below (pipe would leave it
  // unhandled and crash the process), and stopping early ends the read. From byte 0 on the
  // caller's handle, which stays open: a restore reads the same file twice through it.
  const stream = pipeline(
    file.handle.createReadStream({ start: 0, highWaterMark: 256 * 1024, autoClose: false }),
    createGunzip(),
    () => {},
  );
  try {
    reading: for await (const chunk of stream) {
      let text: string;
      try {
        text = decoder.decode(chunk as Buffer, { stream: true });
      } catch (error) {
        throw invalid('corrupted: the data is not UTF-8 text', error);
      }
      const lines = (pending + text).split('\n');
      pending = lines.pop()!;
      if (pending.length > MAX_LINE_CHARS) throw invalid('a line is longer than any backup line');
      for (const line of lines) {
        await takeLine(line);
        if (options.manifestOnly === true && manifest !== undefined) break reading;
      }
    }
    if (options.manifestOnly !== true && pending !== '') await takeLine(pending);
  } catch (error) {
    if (error instanceof AppError) throw error;
    throw describeReadError(error, invalid);
  } finally {
    stream.destroy();
  }

  if (manifest === undefined) throw invalid('the file holds no manifest');
  if (options.manifestOnly === true) {
    return { manifest, rows: manifest.rowCount, sha256: '', bytes };
  }
  if (end === undefined) {
    throw invalid(`truncated: it ends after ${rows} rows without the end marker`);
  }
  const sha256 = hash.digest('hex');
  if (end.rowCount !== rows || manifest.rowCount !== rows) {
    throw invalid(
      `corrupted: it holds ${rows} rows but its manifest says ${manifest.rowCount} and its end marker ${end.rowCount}`,
    );
  }
  if (end.sha256 !== sha256) {
    throw invalid(`corrupted: the rows' SHA-256 is ${sha256}, the end marker says ${end.sha256}`);
  }
  if (badRows > 0) {
    const counted = badRows === 1 ? '1 row breaks' : `${badRows} rows break`;
    const reason = `${counted} the rules every import checks; the first: ${ruleErrors[0]!}`;
    throw invalidBackup(path, reason, { errors: ruleErrors });
  }
  if (batch.length > 0) await options.onRows?.(batch);
  return { manifest, rows, sha256, bytes };
}

type Invalid = (reason: string, cause?: unknown) => AppError;

function describeReadError(error: unknown, invalid: Invalid): unknown {
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  if (code === 'Z_BUF_ERROR') {
    return invalid('truncated: the compressed data ends early (the file was cut short)', error);
  }
  if (typeof code === 'string' && code.startsWith('Z_')) {
    return invalid(`corrupted: the compressed data is damaged (${message})`, error);
  }
  return error;
}

function parseJsonLine(line: string): unknown {
  try {
    return JSON.parse(line) as unknown;
  } catch {
    return undefined;
  }
}

function parseManifest(line: string, path: string, invalid: Invalid): BackupManifest {
  const value = parseJsonLine(line) as Partial<BackupManifest> | undefined;
  if (typeof value !== 'object' || value === null || value.format !== BACKUP_FORMAT) {
    throw invalid('its first line is not a users-api backup manifest');
  }
  const version = value.formatVersion;
  if (typeof version !== 'number' || !Number.isInteger(version) || version < 1) {
    throw invalid('the manifest has no valid formatVersion');
  }
  if (version > BACKUP_FORMAT_VERSION) {
    throw new AppError(
      'ERR_BACKUP_UNSUPPORTED_VERSION',
      `${path} is a backup in format version ${version}, newer than this users-api reads (${BACKUP_FORMAT_VERSION}): restore it with a newer users-api`,
    );
  }
  // Every field a listing or `verify` shows: a manifest without one is refused here, where
  // the file is named, rather than failing whatever displays it.
  const { rowCount, columns } = value;
  const lacking = Object.entries({
    schemaVersion: typeof value.schemaVersion === 'string',
    createdAt: typeof value.createdAt === 'string',
    sourceDialect: value.sourceDialect === 'sqlite' || value.sourceDialect === 'mysql',
    source: typeof value.source === 'string',
    serverName: typeof value.serverName === 'string',
    rowCount: typeof rowCount === 'number' && Number.isSafeInteger(rowCount) && rowCount >= 0,
    columns:
      Array.isArray(columns) &&
      columns.length === USER_FIELDS.length &&
      USER_FIELDS.every((field, index) => columns[index] === field),
  })
    .filter(([, valid]) => !valid)
    .map(([field]) => field);
  if (lacking.length > 0) throw invalid(`the manifest lacks a valid ${lacking.join(', ')}`);
  return value as BackupManifest;
}

function parseEndMarker(line: string, invalid: Invalid): BackupEndMarker {
  const value = parseJsonLine(line) as Partial<BackupEndMarker> | undefined;
  if (
    typeof value !== 'object' ||
    value === null ||
    value.end !== BACKUP_FORMAT ||
    typeof value.rowCount !== 'number' ||
    typeof value.sha256 !== 'string'
  ) {
    throw invalid('corrupted: the end marker is unreadable');
  }
  return value as BackupEndMarker;
}

function parseRow(line: string, lineNumber: number, invalid: Invalid): RawUser {
  const value = parseJsonLine(line);
  if (
    !Array.isArray(value) ||
    value.length !== 5 ||
    !value.every((field): field is string => typeof field === 'string')
  ) {
    throw invalid(`corrupted: line ${lineNumber} is not a user row`);
  }
  const [NAME, STREET, CITY, STATE, USER_DATE] = value as [string, string, string, string, string];
  return { NAME, STREET, CITY, STATE, USER_DATE };
}
