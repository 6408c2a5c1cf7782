import { on } from 'node:events';
import { Worker } from 'node:worker_threads';
import { AppError, type ErrorCode } from '../errors.js';
import type { User } from '../users/user.js';
import type { ImportSource } from './import-source.js';
import type { RecordsSummary } from './validate-records.js';

/** Chunks of the source posted to the worker and not yet read by it, at most. */
const CHUNKS_AHEAD = 4;

/**
 * The worker's old generation, at most: a backstop for input the readers' own limits miss. It
 * holds a chunk and a few batches; a 1,000,000-row CSV import here needed 32 MB (24 ran out).
 */
const WORKER_OLD_GENERATION_MB = 64;

/**
 * Reads `source` through a worker thread that decodes, parses and validates it, and hands the
 * good users to `insert` in batches of `batchRows`, one at a time, on this thread. Parsing
 * (~1 s per 1,000,000 CSV rows here) then overlaps with the database work instead of taking
 * turns with it on one core. Returns what the worker found; throws what it could not read
 * (bad UTF-8, malformed CSV or JSON, a bad header), the source's own errors, or `insert`'s.
 */
export async function readUsersInWorker(
  source: ImportSource,
  batchRows: number,
  insert: (users: readonly User[]) => Promise<void>,
): Promise<RecordsSummary> {
  const worker = new Worker(workerBootstrap(), {
    eval: true,
    workerData: { format: source.format, batchRows },
    // Each batch lives until it is posted, long enough to be copied out of a small young
    // generation: with room for several, parsing 1,000,000 rows never paused for a full GC here
    // (1.2 s every time instead of 1.2-1.7 s).
    resourceLimits: {
      maxYoungGenerationSizeMb: 128,
      maxOldGenerationSizeMb: WORKER_OLD_GENERATION_MB,
    },
  });
  const stop = new AbortController();
  let chunksAhead = 0;
  let readable: (() => void) | undefined;
  const feeding = (async () => {
    for await (const chunk of source.open()) {
      while (chunksAhead >= CHUNKS_AHEAD && !stop.signal.aborted) {
        await new Promise<void>((resolve) => (readable = resolve));
      }
      if (stop.signal.aborted) return;
      chunksAhead += 1;
      worker.postMessage({ bytes: chunk });
    }
    worker.postMessage({ end: true });
  })();
  // A source that cannot be read, or a worker that dies, ends the whole read with its error.
  let failure: { error: unknown } | undefined;
  const fail = (error: unknown) => {
    failure ??= { error };
    stop.abort();
  };
  feeding.catch(fail);
  worker.on('error', fail);
  worker.on('exit', (code) =>
    fail(new Error(`the import worker stopped without an answer (exit code ${code})`)),
  );
  try {
    for await (const [message] of on(worker, 'message', { signal: stop.signal })) {
      const { consumed, users, done, failed } = message as WorkerMessage;
      if (consumed === true) {
        chunksAhead -= 1;
        readable?.();
      } else if (users !== undefined) {
        await insert(usersOf(users));
        worker.postMessage({ taken: true });
      } else if (done !== undefined) {
        return done;
      } else if (failed !== undefined) {
        throw failed.code === undefined
          ? new Error(failed.message)
          : new AppError(failed.code, failed.message, { errors: failed.errors });
      }
    }
    throw new Error('the import worker ended without an answer');
  } catch (error) {
    throw failure === undefined ? error : failure.error;
  } finally {
    stop.abort();
    readable?.();
    await feeding.catch(() => undefined);
    await worker.terminate();
  }
}

interface WorkerMessage {
  consumed?: true;
  users?: string[];
  done?: RecordsSummary;
  failed?: { message: string; code?: ErrorCode; errors?: string[] };
}

function usersOf(fields: string[]): User[] {
  const users = new Array<User>(fields.length / 5);
  for (let index = 0, at = 0; at < fields.length; index += 1, at += 5) {
    users[index] = {
      name: fields[at]!,
      street: fields[at + 1]!,
      city: fields[at + 2]!,
      state: fields[at + 3]!,
      userDate: fields[at + 4]!,
    };
  }
  return users;
}

/**
 * The worker's start script. From compiled JS it imports the worker module; run from the
 * TypeScript sources (tests, tsx) the worker thread first registers tsx, because a worker does
 * not inherit the main thread's module hooks.
 */
function workerBootstrap(): string {
  const extension = import.meta.url.slice(import.meta.url.lastIndexOf('.'));
  const url = new URL(`./validate-records-worker${extension}`, import.meta.url).href;
  if (extension !== '.ts') return `import(${JSON.stringify(url)});`;
  const tsx = import.meta.resolve('tsx/esm/api');
  return `import(${JSON.stringify(tsx)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(url)}); });`;
}
