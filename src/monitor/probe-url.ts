import { formatDuration } from './parse-duration.js';

export interface ProbeOptions {
  /** The whole check (connect, headers, body) must finish within this. */
  timeoutMs: number;
  /** Text the body must contain, like the seed's external check matching `all good`. */
  expect?: string | undefined;
  /** A slower answer counts as a failure. */
  maxLatencyMs?: number | undefined;
}

export interface ProbeResult {
  ok: boolean;
  /** Time until the body was read, the error, or the timeout. */
  latencyMs: number;
  /** HTTP status when a response arrived. */
  status?: number;
  /** Why the check failed, for people: `status 503`, `timeout after 5s`, … */
  reason?: string;
}

export interface ProbeClock {
  /** Monotonic milliseconds. */
  now: () => number;
}

/**
 * Checks one URL once: GET, status 2xx, optional body match, optional latency limit. Never
 * throws; a failure is a result with its reason. `fetchUrl` is the real fetch unless a test
 * gives another.
 */
export async function probeUrl(
  url: string,
  options: ProbeOptions,
  fetchUrl: typeof fetch = fetch,
  clock: ProbeClock = performance,
): Promise<ProbeResult> {
  const started = clock.now();
  const elapsed = () => Math.round((clock.now() - started) * 1000) / 1000;
  try {
    const response = await fetchUrl(url, {
      signal: AbortSignal.timeout(options.timeoutMs),
      redirect: 'manual',
      headers: { 'user-agent': 'users-api-monitor' },
    });
    const body = await response.text();
    const latencyMs = elapsed();
    const status = response.status;
    if (status < 200 || status > 299) {
      return { ok: false, latencyMs, status, reason: `status ${status}` };
    }
    if (options.expect !== undefined && !body.includes(options.expect)) {
      return {
        ok: false,
        latencyMs,
        status,
        reason: `body does not contain ${JSON.stringify(options.expect)}`,
      };
    }
    if (options.maxLatencyMs !== undefined && latencyMs > options.maxLatencyMs) {
      return {
        ok: false,
        latencyMs,
        status,
        reason: `slow: ${formatDuration(latencyMs)} > ${formatDuration(options.maxLatencyMs)}`,
      };
    }
    return { ok: true, latencyMs, status };
  } catch (error) {
    return { ok: false, latencyMs: elapsed(), reason: describeFetchError(error, options) };
  }
}

function describeFetchError(error: unknown, options: ProbeOptions): string {
  if (error instanceof Error && (error.name === 'TimeoutError' || error.name === 'AbortError')) {
    return `timeout after ${formatDuration(options.timeoutMs)}`;
  }
  // fetch reports "fetch failed" and puts the reason (ECONNREFUSED, a bad port…) in `cause`.
  const cause = error instanceof Error ? (error.cause as Error & { code?: string }) : undefined;
  if (typeof cause?.code === 'string') return `connection failed (${cause.code})`;
  if (cause instanceof Error) return `request failed: ${cause.message}`;
  return `request failed: ${error instanceof Error ? error.message : String(error)}`;
}
