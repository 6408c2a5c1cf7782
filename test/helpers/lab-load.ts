import { setTimeout as sleep } from 'node:timers/promises';
import type { Lab } from '../../scripts/fault-lab.js';

/** One request of the load, as the client saw it. */
export interface LoadSample {
  path: string;
  startedAt: number;
  ms: number;
  /** HTTP status, or 0 when no answer came (connection error, client timeout). */
  status: number;
  servedBy: string | undefined;
  error?: string;
}

export interface LoadReport {
  samples: LoadSample[];
  failures: LoadSample[];
  maxMs: number;
  p99Ms: number;
  /** Of the samples that started at or after `since`. */
  after(since: number): LoadSample[];
}

/** Idempotent reads that reach the database (one user, the count) and the cached `/api`. */
export function readPath(index: number): string {
  if (index % 5 === 0) return '/api';
  if (index % 5 === 1) return '/api/count';
  return `/api/users/${1 + ((index * 37) % 1000)}`;
}

/**
 * Runs `workers` clients, each sending one read through HAProxy every `pauseMs`, while
 * `scenario` runs; stops when it ends. Bounded: at most `maxRequests` per worker, and every
 * request gives up after 60 s (counted as a failure).
 */
export async function underLoad(
  lab: Lab,
  scenario: () => Promise<void>,
  options: {
    workers?: number;
    pauseMs?: number;
    maxRequests?: number;
    /**
     * Also start one request every this many ms without waiting for the previous ones (at most
     * 100 in flight): workers stuck on a silent server send nothing, these show when new
     * requests are served again.
     */
    openLoopEveryMs?: number;
    /** The path of a worker's `index`th request (default `readPath`). */
    paths?: (index: number) => string;
  } = {},
): Promise<LoadReport> {
  const { workers = 4, pauseMs = 20, maxRequests = 5000, openLoopEveryMs } = options;
  const pathOf = options.paths ?? readPath;
  const samples: LoadSample[] = [];
  let stopping = false;
  const send = async (path: string) => {
    const startedAt = Date.now();
    try {
      const response = await fetch(`${lab.lbUrl}${path}`, {
        signal: AbortSignal.timeout(60_000),
      });
      await response.arrayBuffer();
      samples.push({
        path,
        startedAt,
        ms: Date.now() - startedAt,
        status: response.status,
        servedBy: response.headers.get('x-served-by') ?? undefined,
      });
    } catch (error) {
      samples.push({
        path,
        startedAt,
        ms: Date.now() - startedAt,
        status: 0,
        servedBy: undefined,
        error: (error as Error).message,
      });
    }
  };
  const worker = async (id: number) => {
    for (let count = 0; count < maxRequests && !stopping; count += 1) {
      await send(pathOf(id * maxRequests + count));
      await sleep(pauseMs);
    }
  };
  const openLoop = async () => {
    if (openLoopEveryMs === undefined) return;
    const inFlight = new Set<Promise<void>>();
    for (let count = 0; count < maxRequests && !stopping; count += 1) {
      if (inFlight.size < 100) {
        const request = send(pathOf(count)).finally(() => inFlight.delete(request));
        inFlight.add(request);
      }
      await sleep(openLoopEveryMs);
    }
    await Promise.all(inFlight);
  };
  const running = [...Array.from({ length: workers }, (_, id) => worker(id)), openLoop()];
  try {
    await scenario();
  } finally {
    stopping = true;
    await Promise.all(running);
  }
  return summarize(samples);
}

export function summarize(samples: LoadSample[]): LoadReport {
  const sorted = samples.map((sample) => sample.ms).sort((a, b) => a - b);
  return {
    samples,
    failures: samples.filter((sample) => sample.status < 200 || sample.status >= 300),
    maxMs: sorted.at(-1) ?? 0,
    p99Ms: sorted[Math.floor(sorted.length * 0.99)] ?? 0,
    after: (since) => samples.filter((sample) => sample.startedAt >= since),
  };
}

/** One line a person can read in the test output and copy into docs/fault-lab.md. */
export function reportFigure(fault: string, figures: Record<string, number | string>): void {
  process.stderr.write(
    `LAB FIGURE ${fault}: ${Object.entries(figures)
      .map(([name, value]) => `${name}=${value}`)
      .join(' ')}\n`,
  );
}
