import { validateUser } from '../users/validate-user.js';
import type { ImportFormat } from './import-source.js';
import { readCsvRecords } from './read-csv-records.js';
import { readJsonRecords } from './read-json-records.js';
import { readNdjsonRecords } from './read-ndjson-records.js';
import type { SourceRecord } from './source-record.js';

/** The report stops after this many bad rows: a file that bad needs fixing at the source. */
export const MAX_REPORTED_BAD_ROWS = 100;

const READERS: Record<
  ImportFormat,
  (text: AsyncIterable<string>) => AsyncIterable<SourceRecord[]>
> = {
  csv: readCsvRecords,
  json: readJsonRecords,
  ndjson: readNdjsonRecords,
};

/** What reading a whole file found: rows read, and the bad ones (up to MAX_REPORTED_BAD_ROWS). */
export interface RecordsSummary {
  rows: number;
  badRows: number;
  errors: string[];
}

/**
 * Reads and validates every record of `text` in `format`, handing the good users to `emit` in
 * batches of `batchRows`, flattened (five fields per user, in USER_FIELDS order: one array of
 * strings crosses a thread boundary at half the cost of user objects). Once a bad row is seen
 * nothing more is emitted, and reading stops at MAX_REPORTED_BAD_ROWS bad rows.
 */
export async function validateRecords(
  text: AsyncIterable<string>,
  format: ImportFormat,
  batchRows: number,
  emit: (users: string[]) => Promise<void>,
): Promise<RecordsSummary> {
  const errors: string[] = [];
  let rows = 0;
  let badRows = 0;
  let batch: string[] = [];
  reading: for await (const records of READERS[format](text)) {
    for (const record of records) {
      rows += 1;
      if ('problem' in record) {
        errors.push(`${record.location}: ${record.problem}`);
        badRows += 1;
      } else {
        const result = validateUser(record.raw);
        if (!result.ok) {
          for (const { field, reason } of result.problems) {
            errors.push(`${record.location}: ${field}: ${reason}`);
          }
          badRows += 1;
        } else if (badRows === 0) {
          const { user } = result;
          batch.push(user.name, user.street, user.city, user.state, user.userDate);
          if (batch.length === batchRows * 5) {
            await emit(batch);
            batch = [];
          }
        }
      }
      if (badRows === MAX_REPORTED_BAD_ROWS) break reading;
    }
  }
  if (badRows === 0 && batch.length > 0) await emit(batch);
  return { rows, badRows, errors };
}
