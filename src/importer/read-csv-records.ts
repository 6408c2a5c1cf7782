import { AppError } from '../errors.js';
import { USER_FIELDS, type RawUser, type UserField } from '../users/user.js';
import { parseCsv } from './parse-csv.js';
import type { SourceRecord } from './source-record.js';

const EXPECTED_HEADER = USER_FIELDS.join(',');

/**
 * Streams CSV text into batches of records. The header is required; columns are matched by
 * name, case-insensitively, in any order. `line N` is the physical line a record starts on.
 */
export async function* readCsvRecords(text: AsyncIterable<string>): AsyncGenerator<SourceRecord[]> {
  let columns: UserField[] | undefined;
  for await (const batch of parseCsv(text)) {
    let start = 0;
    if (columns === undefined) {
      columns = readHeader(batch[0]!.fields, batch[0]!.line);
      start = 1;
    }
    const records: SourceRecord[] = new Array<SourceRecord>(batch.length - start);
    for (let index = start; index < batch.length; index += 1) {
      const { fields, line } = batch[index]!;
      records[index - start] = toRecord(fields, columns, `line ${line}`);
    }
    if (records.length > 0) yield records;
  }
  if (columns === undefined) {
    throw new AppError(
      'ERR_IMPORT_BAD_FILE',
      `the file is empty: expected a header line ${EXPECTED_HEADER}`,
    );
  }
}

function readHeader(record: string[], line: number): UserField[] {
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
      `line ${line}: bad header: ${problems.join('; ')}; expected the columns ${EXPECTED_HEADER} ` +
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
  for (let index = 0; index < columns.length; index += 1) raw[columns[index]!] = values[index]!;
  return { location, raw };
}

function show(name: string): string {
  return JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}…` : name);
}
