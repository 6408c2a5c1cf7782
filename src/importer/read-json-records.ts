import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import streamArray from 'stream-json/streamers/stream-array.js';
import { AppError } from '../errors.js';
import { recordFromJsonValue, type SourceRecord } from './source-record.js';

/** Streams a top-level JSON array of user objects; only one item is in memory at a time. */
export async function* readJsonRecords(
  text: AsyncIterable<string>,
): AsyncGenerator<SourceRecord[]> {
  const items = streamArray.withParserAsStream();
  const feeding = pipeline(Readable.from(text), items);
  // The pipeline's failure is also thrown by the loop below; this keeps it from being unhandled.
  feeding.catch(() => undefined);
  try {
    for await (const item of items as AsyncIterable<{ key: number; value: unknown }>) {
      yield [recordFromJsonValue(item.value, `item ${item.key + 1}`)];
    }
  } catch (error) {
    if (error instanceof AppError) throw error;
    const reason = error instanceof Error ? error.message : String(error);
    throw new AppError(
      'ERR_IMPORT_BAD_FILE',
      `invalid JSON: ${reason}; expected a JSON array of user objects`,
      { cause: error },
    );
  } finally {
    items.destroy();
  }
}
