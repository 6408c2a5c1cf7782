import type { RequestDurationTotals } from '../metrics/create-metrics.js';

/** Requests per second and their p99 over the last window. */
export interface Traffic {
  requestsPerSecond: number;
  /** null when no request finished in the window. */
  p99Ms: number | null;
}

export interface TrafficMeterOptions {
  /** The request histogram's totals so far (Metrics.requestDurationTotals). */
  totals: () => RequestDurationTotals;
  /** Upper bounds of the histogram's buckets, in seconds. */
  bounds: readonly number[];
  /** The window the figures cover (the newest reading older than it is the baseline). */
  windowMs: number;
  /** A monotonic clock in ms. */
  clock?: () => number;
}

/**
 * Requests/s and p99 from the request histogram `/metrics` exports, the way Prometheus takes
 * `rate()` and `histogram_quantile()` from two scrapes: each reading is kept for `windowMs`,
 * and the figures are the difference between now and the oldest reading kept. The p99 is
 * interpolated within its bucket, so it is as coarse as the buckets. No request pays for this:
 * the histogram counts them anyway.
 */
export function createTrafficMeter(options: TrafficMeterOptions): () => Traffic {
  const clock = options.clock ?? (() => performance.now());
  const readings: { at: number; totals: RequestDurationTotals }[] = [
    { at: clock(), totals: options.totals() },
  ];
  return () => {
    const now = { at: clock(), totals: options.totals() };
    // Keep one reading at least windowMs old as the baseline, and every newer one.
    while (readings.length > 1 && now.at - readings[1]!.at >= options.windowMs) readings.shift();
    const base = readings[0]!;
    // At most four readings a second are kept, however often the snapshot is asked for.
    if (now.at - readings[readings.length - 1]!.at >= 250) readings.push(now);
    const seconds = (now.at - base.at) / 1000;
    const count = now.totals.count - base.totals.count;
    const buckets = now.totals.buckets.map((inBucket, i) => inBucket - base.totals.buckets[i]!);
    return {
      requestsPerSecond: seconds > 0 ? Math.round((count / seconds) * 100) / 100 : 0,
      p99Ms: quantileMs(0.99, buckets, options.bounds),
    };
  };
}

/** histogram_quantile over per-bucket counts (the last one over the largest bound), in ms. */
export function quantileMs(
  quantile: number,
  buckets: readonly number[],
  bounds: readonly number[],
): number | null {
  const total = buckets.reduce((sum, inBucket) => sum + inBucket, 0);
  if (total === 0) return null;
  const rank = quantile * total;
  let below = 0;
  for (let index = 0; index < bounds.length; index += 1) {
    const inBucket = buckets[index]!;
    if (below + inBucket >= rank && inBucket > 0) {
      const lower = index === 0 ? 0 : bounds[index - 1]!;
      const seconds = lower + (bounds[index]! - lower) * ((rank - below) / inBucket);
      return Math.round(seconds * 1_000_000) / 1000;
    }
    below += inBucket;
  }
  // Over the largest bound: Prometheus answers the largest bound too.
  return bounds[bounds.length - 1]! * 1000;
}
