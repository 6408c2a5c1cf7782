import { AppError } from '../errors.js';
import { MAX_RECORD_CHARS } from './max-record-chars.js';
import { recordFromJsonValue, type SourceRecord } from './source-record.js';

/**
 * Streams NDJSON (one user object per line, LF or CRLF) into batches of records, one batch per
 * input chunk. Blank lines are skipped; `item N` is line N.
 */
export async function* readNdjsonRecords(
  text: AsyncIterable<string>,
): AsyncGenerator<SourceRecord[]> {
  let pending = '';
  let lineNumber = 0;
  const toRecords = (lines: string[]): SourceRecord[] => {
    const records: SourceRecord[] = [];
    for (const line of lines) {
      lineNumber += 1;
      if (line.length > MAX_RECORD_CHARS) throw lineTooLong(lineNumber);
      if (line.trim() === '') continue;
      const location = `item ${lineNumber}`;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        records.push({ location, problem: `invalid JSON: ${reason}` });
        continue;
      }
      records.push(recordFromJsonValue(value, location));
    }
    return records;
  };
  for await (const chunk of text) {
    const lines = (pending + chunk).split('\n');
    pending = lines.pop()!;
    const records = toRecords(lines);
    if (pending.length > MAX_RECORD_CHARS) throw lineTooLong(lineNumber + 1);
    if (records.length > 0) yield records;
  }
  const last = toRecords([pending]);
  if (last.length > 0) yield last;
}

function lineTooLong(lineNumber: number): AppError {
  return new AppError(
    'ERR_IMPORT_BAD_FILE',
    `item ${lineNumber}: a line runs over ${MAX_RECORD_CHARS} characters: NDJSON holds one user object per line`,
  );
}
