/**
 * The chaos soak's load (scripts/chaos.ts), run in a worker thread: the lab's fault and SQL calls
 * block the soak's own event loop (spawnSync), and must not stretch the latencies measured here.
 * Bounded: a few clients, each waiting between requests, a cap on requests per client, a
 * timeout on every request. Posts its samples in batches; stops when told to.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ChaosSample } from './chaos-report.js';

export interface ChaosLoadOptions {
  lbUrl: string;
  adminToken: string;
  seed: number;
  /** Read clients; each waits 40–160 ms between requests. */
  readers: number;
  /** Milliseconds between writes (one writer), jittered ±50%. */
  writeEveryMs: number;
  /** Users appended before the faults start, so that the table is large enough to stream. */
  bulkRows: number;
  /** Cap on requests per client (the soak stops the load long before, normally). */
  maxRequests: number;
}

export type ChaosLoadMessage =
  | { type: 'ready' }
  | { type: 'samples'; samples: ChaosSample[] }
  | { type: 'failed'; error: string }
  | { type: 'done' };

/** A client gives up on an answer after this long: far past every timeout in the stack. */
const REQUEST_TIMEOUT_MS = 45_000;

/**
 * A write that got no answer, a 503 or a 409 is sent again with the same Idempotency-Key, up to
 * this many times in all: a commit that landed although its answer was lost (a full disk, a
 * cut connection) is then replayed, not written twice (docs/api.md, "Idempotency keys").
 */
const MAX_WRITE_ATTEMPTS = 4;
const WRITE_RETRY_PAUSE_MS = 500;

/** Mulberry32: a small seeded PRNG, so a seed replays the same choices. */
export function createRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const STATES = ['NY', 'CA', 'TX', 'KS', 'FL', 'WA'];
const LETTERS = 'abcdefghijklmnoprstw';

/** One read: a filtered or paged query, the cached bare `/api`, one user, a count, or a stream. */
function pickRead(random: () => number): { kind: 'read' | 'stream'; path: string; accept: string } {
  const roll = random();
  const state = STATES[Math.floor(random() * STATES.length)]!;
  const letter = LETTERS[Math.floor(random() * LETTERS.length)]!;
  if (roll < 0.15) return { kind: 'read', path: '/api', accept: 'application/json' };
  if (roll < 0.35)
    return { kind: 'read', path: `/api/users/${1 + Math.floor(random() * 1000)}`, accept: '*/*' };
  if (roll < 0.5)
    return { kind: 'read', path: `/api?state=${state}&limit=50`, accept: 'application/json' };
  if (roll < 0.62)
    return {
      kind: 'read',
      path: `/api?name=${letter}&sort=NAME&limit=20&fields=NAME,CITY`,
      accept: 'application/json',
    };
  if (roll < 0.72) return { kind: 'read', path: `/api?q=${letter}a&limit=100`, accept: 'text/csv' };
  if (roll < 0.84) return { kind: 'read', path: `/api/count?state=${state}`, accept: '*/*' };
  if (roll < 0.92)
    return { kind: 'stream', path: '/api?fields=ID,NAME', accept: 'application/x-ndjson' };
  return { kind: 'stream', path: '/api?sort=-NAME', accept: 'text/csv' };
}

/** Whether a 200 body is whole: JSON parses, NDJSON and CSV end with their line terminators. */
function bodyLooksWhole(accept: string, body: string): boolean {
  if (accept === 'application/x-ndjson') return body.endsWith('\n');
  if (accept === 'text/csv') return body.endsWith('\r\n');
  try {
    JSON.parse(body);
    return true;
  } catch {
    return false;
  }
}

async function problemCode(response: Response): Promise<string> {
  const text = await response.text();
  try {
    return (JSON.parse(text) as { code?: string }).code ?? '';
  } catch {
    return '';
  }
}

async function request(
  options: ChaosLoadOptions,
  kind: ChaosSample['kind'],
  path: string,
  init: RequestInit & { accept: string; names?: string[] },
): Promise<ChaosSample> {
  const startedAt = Date.now();
  const sample: ChaosSample = {
    kind,
    path,
    startedAt,
    ms: 0,
    status: 0,
    headersMs: undefined,
    servedBy: undefined,
    failure: undefined,
    ...(init.names === undefined ? {} : { names: init.names }),
  };
  try {
    const response = await fetch(`${options.lbUrl}${path}`, {
      ...init,
      headers: { accept: init.accept, ...(init.headers as Record<string, string> | undefined) },
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    sample.headersMs = Date.now() - startedAt;
    sample.status = response.status;
    sample.servedBy = response.headers.get('x-served-by') ?? undefined;
    if (response.status >= 200 && response.status < 300) {
      try {
        const body = await response.text();
        if (!bodyLooksWhole(init.accept, body)) sample.failure = 'bad body';
      } catch {
        sample.failure = 'cut body';
      }
    } else {
      const code = await problemCode(response).catch(() => '');
      sample.failure = `status ${response.status}${code === '' ? '' : ` ${code}`}`;
    }
  } catch (error) {
    sample.failure =
      (error as Error).name === 'TimeoutError' ? 'no answer (client timeout)' : 'no answer';
  }
  sample.ms = Date.now() - startedAt;
  return sample;
}

/**
 * One write with an Idempotency-Key, retried (bounded) while its outcome is unknown or it may
 * succeed later; every attempt is a sample of its own.
 */
async function keyedWrite(
  options: ChaosLoadOptions,
  key: string,
  kind: 'append' | 'create',
  path: string,
  init: RequestInit & { accept: string; names: string[]; headers: Record<string, string> },
  record: (sample: ChaosSample) => void,
  stopped: () => boolean,
): Promise<ChaosSample> {
  const headers = { ...init.headers, 'idempotency-key': `"${key}"` };
  for (let attempt = 1; ; attempt += 1) {
    const sample = await request(options, kind, path, { ...init, headers });
    record(sample);
    const retryable = sample.status === 0 || sample.status === 503 || sample.status === 409;
    if (!retryable || attempt >= MAX_WRITE_ATTEMPTS || stopped()) return sample;
    await sleep(WRITE_RETRY_PAUSE_MS * attempt);
  }
}

function csvOf(names: string[]): string {
  return `NAME,STREET,CITY,STATE,USER_DATE\n${names.map((name) => `${name},Chaos Street,Chaos City,NY,01/02/03\n`).join('')}`;
}

/** Runs the load until `stopped()`; every finished request goes to `record`. */
export async function runChaosLoad(
  options: ChaosLoadOptions,
  stopped: () => boolean,
  record: (sample: ChaosSample) => void,
  ready: () => void,
): Promise<void> {
  const admin = { authorization: `Bearer ${options.adminToken}` };
  // Keys unique to this run: a lab database that outlived an earlier soak never replays it.
  const keyOf = (what: string) => `chaos-${options.seed}-${Date.now()}-${what}`;
  // The bulk append: a table over 2,000 rows, so that unfiltered NDJSON and CSV reads stream.
  const bulkNames = Array.from({ length: options.bulkRows }, (_, i) => `Chaos bulk ${i}`);
  const bulk = await keyedWrite(
    options,
    keyOf('bulk'),
    'append',
    '/addtosql?mode=append',
    {
      method: 'POST',
      accept: 'application/json',
      headers: { ...admin, 'content-type': 'text/csv' },
      body: csvOf(bulkNames),
      names: bulkNames,
    },
    record,
    stopped,
  );
  if (bulk.failure !== undefined) throw new Error(`the bulk append failed: ${bulk.failure}`);
  ready();

  const reader = async (id: number) => {
    const random = createRandom(options.seed * 1000 + id);
    for (let count = 0; count < options.maxRequests && !stopped(); count += 1) {
      const read = pickRead(random);
      record(await request(options, read.kind, read.path, { accept: read.accept }));
      await sleep(40 + random() * 120);
    }
  };
  const writer = async () => {
    const random = createRandom(options.seed * 1000 + 999);
    for (let count = 0; count < options.maxRequests && !stopped(); count += 1) {
      await sleep(options.writeEveryMs * (0.5 + random()));
      if (stopped()) break;
      if (random() < 0.6) {
        const names = [`Chaos append ${count} a`, `Chaos append ${count} b`];
        await keyedWrite(
          options,
          keyOf(`append-${count}`),
          'append',
          '/addtosql?mode=append',
          {
            method: 'POST',
            accept: 'application/json',
            headers: { ...admin, 'content-type': 'text/csv' },
            body: csvOf(names),
            names,
          },
          record,
          stopped,
        );
      } else {
        const name = `Chaos create ${count}`;
        await keyedWrite(
          options,
          keyOf(`create-${count}`),
          'create',
          '/api/users',
          {
            method: 'POST',
            accept: 'application/json',
            headers: { ...admin, 'content-type': 'application/json' },
            body: JSON.stringify({
              NAME: name,
              STREET: 'Chaos Street',
              CITY: 'Chaos City',
              STATE: 'NY',
              USER_DATE: '01/02/03',
            }),
            names: [name],
          },
          record,
          stopped,
        );
      }
    }
  };
  await Promise.all([...Array.from({ length: options.readers }, (_, id) => reader(id)), writer()]);
}

// The worker's entry: run the load, post samples every second, stop on 'stop'.
if (parentPort !== null && (workerData as { chaosLoad?: ChaosLoadOptions } | null)?.chaosLoad) {
  const port = parentPort;
  const options = (workerData as { chaosLoad: ChaosLoadOptions }).chaosLoad;
  let stopping = false;
  let batch: ChaosSample[] = [];
  const flush = () => {
    if (batch.length === 0) return;
    port.postMessage({ type: 'samples', samples: batch } satisfies ChaosLoadMessage);
    batch = [];
  };
  const timer = setInterval(flush, 1000);
  port.on('message', (message: { type: string }) => {
    if (message.type === 'stop') stopping = true;
  });
  try {
    await runChaosLoad(
      options,
      () => stopping,
      (sample) => batch.push(sample),
      () => port.postMessage({ type: 'ready' } satisfies ChaosLoadMessage),
    );
    flush();
    port.postMessage({ type: 'done' } satisfies ChaosLoadMessage);
  } catch (error) {
    flush();
    port.postMessage({ type: 'failed', error: String(error) } satisfies ChaosLoadMessage);
  } finally {
    clearInterval(timer);
    port.close();
  }
}
