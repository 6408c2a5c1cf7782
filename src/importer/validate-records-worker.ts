/**
 * Worker thread of readUsersInWorker: decodes, parses and validates the bytes the main thread
 * posts, and posts the good users back in batches. Both directions take turns by credit, so
 * neither side runs ahead by more than a few chunks or batches.
 *
 * In:  { bytes: Uint8Array } · { end: true } · { taken: true } (a batch was handed on)
 * Out: { consumed: true } (a chunk was read) · { users: string[] } · { done: RecordsSummary } ·
 *      { failed: { message, code?, errors? } }
 */
import { parentPort, workerData } from 'node:worker_threads';
import { AppError } from '../errors.js';
import { decodeUtf8 } from './decode-utf8.js';
import type { ImportFormat } from './import-source.js';
import { validateRecords } from './validate-records.js';

/** Batches posted and not yet handed on by the main thread, at most. */
const BATCHES_AHEAD = 2;

const port = parentPort!;
const { format, batchRows } = workerData as { format: ImportFormat; batchRows: number };

const chunks: Uint8Array[] = [];
let ended = false;
let batchesAhead = 0;
// The reader (waiting for bytes) and the writer (waiting for credit) may wait at the same time:
// each message wakes both, or one of them would wait for ever.
let waiting: (() => void)[] = [];
const waitForMessage = () => new Promise<void>((resolve) => waiting.push(resolve));

port.on('message', (message: { bytes?: Uint8Array; end?: true; taken?: true }) => {
  if (message.bytes !== undefined) chunks.push(message.bytes);
  if (message.end === true) ended = true;
  if (message.taken === true) batchesAhead -= 1;
  const woken = waiting;
  waiting = [];
  for (const wake of woken) wake();
});

async function* bytes(): AsyncGenerator<Buffer> {
  for (;;) {
    const chunk = chunks.shift();
    if (chunk !== undefined) {
      port.postMessage({ consumed: true });
      yield Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    } else if (ended) {
      return;
    } else {
      await waitForMessage();
    }
  }
}

try {
  const summary = await validateRecords(decodeUtf8(bytes()), format, batchRows, async (users) => {
    while (batchesAhead >= BATCHES_AHEAD) await waitForMessage();
    batchesAhead += 1;
    port.postMessage({ users });
  });
  port.postMessage({ done: summary });
} catch (error) {
  port.postMessage({
    failed:
      error instanceof AppError
        ? { message: error.message, code: error.code, errors: error.errors }
        : { message: String((error as Error | undefined)?.message ?? error) },
  });
}
