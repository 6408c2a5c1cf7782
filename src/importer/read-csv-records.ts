import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CsvError, parse, type Info } from 'csv-parse';
import { AppError } from '../errors.js';
import { USER_FIELDS, type RawUser, type UserField } from '../users/user.js';
import type { SourceRecord } from './source-record.js';

const EXPECTED_HEADER = USER_FIELDS.join(',');

/**
 * Streams CSV text into records. The header is required; columns are matched by name,
 * case-insensitively, in any order. Quoted fields may hold commas, quotes and line breaks;
 * lines may end in CRLF or LF, even mixed within one file.
 */
export async function* readCsvRecords(text: AsyncIterable<string>): AsyncGenerator<SourceRecord> {
  const parser = parse({
    bom: true,
    info: true,
    // Both delimiters: csv-parse guesses one from the first line, so a CRLF header followed by
    // LF data lines would otherwise read as one giant bad record.
    record_delimiter: ['\r\n', '\n'],
    relax_column_count: true,
    skip_empty_lines: true,
  });
  const feeding = pipeline(Readable.from(text), parser);
  // The pipeline's failure is also thrown by the loop below; this keeps it from being unhandled.
  feeding.catch(() => undefined);

  let columns: UserField[] | undefined;
  let linesBefore = 0;
  try {
    for await (const { record, info } of parser as AsyncIterable<{
      record: string[];
      info: Info;
    }>) {
      // csv-parse's own line count drifts on CRLF inside quotes, so physical lines are counted
      // here: each record spans one line plus the line breaks inside its fields.
      const line = 1 + linesBefore + info.empty_lines;
      linesBefore += 1 + countLineBreaks(record);
      if (columns === undefined) {
        columns = readHeader(record);
        continue;
      }
      yield toRecord(record, columns, `line ${line}`);
    }
  } catch (error) {
    if (error instanceof CsvError) {
      throw new AppError('ERR_IMPORT_BAD_FILE', `malformed CSV: ${error.message}`, {
        cause: error,
      });
    }
    throw error;
  } finally {
    parser.destroy();
  }
  if (columns === undefined) {
    throw new AppError(
      'ERR_IMPORT_BAD_FILE',
      `the file is empty: expected a header line ${EXPECTED_HEADER}`,
    );
  }
}

function readHeader(record: string[]): UserField[] {
  const names = record.map((name) => name.trim().toUpperCase());
  const unknown = names.filter((name) => !(USER_FIELDS as readonly string[]).includes(name));
  const missing = USER_FIELDS.filter((field) => !names.includes(field));
  const repeated = names.filter((name, index) => names.indexOf(name) !== index);
  const problems = [
    unknown.length > 0 ? `unknown column ${unknown.map(show).join(', ')}` : '',
    missing.length > 0 ? `missing column ${missing.join(', ')}` : '',
    repeated.length > 0 ? `repeated column ${repeated.join(', ')}` : '',
  ].filter((problem) => problem !== '');
  if (problems.length > 0) {
    throw new AppError(
      'ERR_IMPORT_BAD_FILE',
      `line 1: bad header: ${problems.join('; ')}; expected the columns ${EXPECTED_HEADER} ` +
        '(any order, any case)',
    );
  }
  return names as UserField[];
}

function toRecord(values: string[], columns: UserField[], location: string): SourceRecord {
  if (values.length !== columns.length) {
    return {
      location,
      problem: `expected ${columns.length} fields (${columns.join(',')}), found ${values.length}`,
    };
  }
  const raw = {} as RawUser;
  columns.forEach((field, index) => {
    raw[field] = values[index]!;
  });
  return { location, raw };
}

function countLineBreaks(values: string[]): number {
  let count = 0;
  for (const value of values) {
    for (let index = value.indexOf('\n'); index !== -1; index = value.indexOf('\n', index + 1)) {
      count += 1;
    }
  }
  return count;
}

function show(name: string): string {
  return JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}…` : name);
}
