import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { isDatabaseCorruption } from '../is-database-failure.js';

/** Hears when the latch closes and opens again. */
export interface SqliteLogger {
  error(details: object, message: string): void;
  info(details: object, message: string): void;
}

/**
 * Not-ready state for a damaged SQLite file. The readiness probe reads one row and cannot find
 * a corrupt page elsewhere, so the first query that reports corruption latches it, and
 * `/healthcheck` answers 503 until a restart or until `PRAGMA quick_check` passes again.
 */
export interface CorruptionLatch {
  /** Latches when `error` reports corruption; any other error is ignored. */
  observe(error: unknown): void;
  /** `database corrupt: …` while latched, else undefined. */
  reason(): string | undefined;
  close(): Promise<void>;
}

export interface CorruptionLatchOptions {
  path: string;
  /** How often a latched file is checked again. */
  recheckMs: number;
  logger: SqliteLogger | undefined;
  /** Called when a check passes, before the latch opens: drop pages cached while damaged. */
  beforeReady: () => void;
}

/**
 * While latched, `quick_check` runs every `recheckMs` in a worker thread on a connection of its
 * own: it reads every page (~0.85 s for 1,000,000 users here), which on the event loop would
 * stall every request, `/livez` included. A pass opens the latch, so a file repaired in place
 * (or a transient read error) needs no restart. A file replaced under the running server (a new
 * inode) is never passed: the open connections still read the old one.
 */
export function createCorruptionLatch(options: CorruptionLatchOptions): CorruptionLatch {
  const { path, logger } = options;
  const opened = statSync(path);
  let reason: string | undefined;
  let timer: NodeJS.Timeout | undefined;
  let worker: Worker | undefined;
  let checking: Promise<void> | undefined;
  let closed = false;

  const schedule = () => {
    if (closed) return;
    timer = setTimeout(() => {
      timer = undefined;
      checking = recheck().finally(() => (checking = undefined));
    }, options.recheckMs);
  };
  const recheck = async () => {
    let found: string;
    try {
      const now = statSync(path);
      if (now.ino !== opened.ino || now.dev !== opened.dev) {
        found = 'the file was replaced while the server ran: restart it to use the new one';
      } else {
        worker = startQuickCheck(path);
        found = await quickCheckResult(worker);
      }
    } catch (error) {
      // A file-system error names the path: /healthcheck is public, so only the code goes out.
      const { code, syscall } = error as { code?: unknown; syscall?: unknown };
      found =
        typeof code === 'string' && typeof syscall === 'string'
          ? `the file cannot be checked (${code} on ${syscall})`
          : error instanceof Error
            ? error.message
            : String(error);
      logger?.error({ err: error, path }, 'database integrity check could not run');
    } finally {
      worker = undefined;
    }
    if (closed) return;
    if (found === 'ok') {
      options.beforeReady();
      reason = undefined;
      logger?.info({ path }, 'database integrity check passed: ready again');
      return;
    }
    reason = `database corrupt: ${found}`;
    schedule();
  };

  return {
    observe(error) {
      if (reason !== undefined || closed || !isDatabaseCorruption(error)) return;
      reason = `database corrupt: ${(error as Error).message}`;
      logger?.error(
        { err: error, path, recheckMs: options.recheckMs },
        `${reason}; /healthcheck answers 503 until PRAGMA quick_check passes or a restart`,
      );
      schedule();
    },
    reason: () => reason,
    async close() {
      closed = true;
      clearTimeout(timer);
      await worker?.terminate();
      await checking;
    },
  };
}

/** better-sqlite3's entry file, which the worker loads by path. */
const SQLITE_MODULE = createRequire(import.meta.url).resolve('better-sqlite3');

/** The worker: one read-only connection, `quick_check(1)`, its first line (or the error). */
const QUICK_CHECK_SCRIPT = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.module);
let connection;
try {
  connection = new Database(workerData.path, { readonly: true, fileMustExist: true });
  parentPort.postMessage({ result: connection.pragma('quick_check(1)', { simple: true }) });
} catch (error) {
  parentPort.postMessage({ failed: error instanceof Error ? error.message : String(error) });
} finally {
  connection?.close();
}
`;

function startQuickCheck(path: string): Worker {
  return new Worker(QUICK_CHECK_SCRIPT, {
    eval: true,
    workerData: { module: SQLITE_MODULE, path },
  });
}

/** `ok`, or the first problem quick_check found, on one line. */
function quickCheckResult(worker: Worker): Promise<string> {
  return new Promise((resolve, reject) => {
    worker.once('message', (message: { result?: string; failed?: string }) =>
      resolve(
        (message.result ?? message.failed ?? 'no answer')
          .replace(/^\*\*\* in database \w+ \*\*\*\s*/, '')
          .split('\n')[0]!,
      ),
    );
    worker.once('error', reject);
    worker.once('exit', (code) => reject(new Error(`the quick_check worker exited with ${code}`)));
  });
}
