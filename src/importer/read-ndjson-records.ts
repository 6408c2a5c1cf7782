import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { recordFromJsonValue, type SourceRecord } from './source-record.js';

/** Streams NDJSON (one user object per line); blank lines are skipped, `item N` is line N. */
export async function* readNdjsonRecords(
  text: AsyncIterable<string>,
): AsyncGenerator<SourceRecord> {
  const input = Readable.from(text);
  const lines = createInterface({ input, crlfDelay: Infinity });
  let lineNumber = 0;
  try {
    for await (const line of lines) {
      lineNumber += 1;
      if (line.trim() === '') continue;
      const location = `item ${lineNumber}`;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error);
        yield { location, problem: `invalid JSON: ${reason}` };
        continue;
      }
      yield recordFromJsonValue(value, location);
    }
  } finally {
    lines.close();
    input.destroy();
  }
}
