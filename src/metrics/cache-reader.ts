/**
 * Wraps an async read so that callers within `maxAgeMs` of the last success share its value,
 * and concurrent callers share one read in flight. Failures are not cached: the next call
 * tries again. Used for the users row count, which a scrape or a health view may ask for
 * often and which costs a table scan on MySQL.
 */
export function cacheReader<T>(
  read: () => Promise<T>,
  options: { maxAgeMs: number; now?: () => number },
): () => Promise<T> {
  const now = options.now ?? Date.now;
  let cached: { value: T; at: number } | undefined;
  let pending: Promise<T> | undefined;
  return () => {
    if (cached !== undefined && now() - cached.at < options.maxAgeMs) {
      return Promise.resolve(cached.value);
    }
    pending ??= read()
      .then((value) => {
        cached = { value, at: now() };
        return value;
      })
      .finally(() => {
        pending = undefined;
      });
    return pending;
  };
}
