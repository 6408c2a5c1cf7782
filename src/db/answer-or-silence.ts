import type { DatabaseExecutor } from './database.js';

/** A server that left a statement unanswered and then did not answer a probe either. */
export class ServerSilentError extends Error {
  override name = 'ServerSilentError';
  /** mysql2-style code, so describeError() names it in health JSON and logs. */
  readonly code = 'ERR_DB_SERVER_SILENT';
}

/**
 * Rejects with ServerSilentError when `promise` has not settled within `ms`. The work behind it
 * goes on (its own DB_QUERY_TIMEOUT_MS ends it); its late failure is deliberately ignored.
 */
export function withinMs<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () => reject(new ServerSilentError(`${what}: no answer within ${ms} ms`)),
      ms,
    );
  });
  promise.catch(() => undefined); // settled after the race was lost: nobody waits for it
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

const SLOW = Symbol('slow');

/**
 * `attempt`'s outcome, unless its server has gone silent. A silent server (frozen, partitioned)
 * answers nothing and resets nothing, so only the query timeout (10 s) would end the wait.
 * After `budgetMs` without an answer, `probe` asks the server something trivial: if that
 * answers, the statement is merely long (a scan) and is waited for; if it does not, this
 * rejects with ServerSilentError so the caller can try another server.
 * @see docs/design-notes.md, "Silent servers"
 */
export async function answerOrSilence<T>(
  attempt: Promise<T>,
  budgetMs: number,
  probe: () => Promise<unknown>,
): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const slow = new Promise<typeof SLOW>((resolve) => {
    timer = setTimeout(() => resolve(SLOW), budgetMs);
  });
  try {
    const first = await Promise.race([attempt, slow]);
    if (first !== SLOW) return first;
  } finally {
    clearTimeout(timer);
  }
  const verdict = await Promise.race([
    attempt.then(
      () => 'settled' as const,
      () => 'settled' as const,
    ),
    probe().then(
      () => 'alive' as const,
      (error: unknown) => error,
    ),
  ]);
  if (verdict === 'settled' || verdict === 'alive') return attempt;
  attempt.catch(() => undefined); // abandoned: its own query timeout ends it
  throw new ServerSilentError(
    `no answer within ${budgetMs} ms, and the server did not answer a probe either`,
    { cause: verdict },
  );
}

/**
 * The silent-server check with its settings bound: `unlessSilent(work, executor, name)` is
 * `work` given `firstResponseMs` to answer, then a ping of that server `probeMs`.
 */
export function silentServerCheck(
  ping: (executor: DatabaseExecutor) => Promise<unknown>,
  firstResponseMs: number,
  probeMs: number,
) {
  return <T>(work: Promise<T>, executor: DatabaseExecutor, name: string): Promise<T> =>
    answerOrSilence(work, firstResponseMs, () => withinMs(ping(executor), probeMs, name));
}
