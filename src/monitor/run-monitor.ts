import type { ProbeResult } from './probe-url.js';
import type { Alert, Delivery } from './send-alert.js';
import {
  MAX_LATENCIES,
  emptyHistory,
  type MonitorState,
  type UrlHistory,
} from './monitor-state.js';

export interface MonitorOptions {
  urls: readonly string[];
  intervalMs: number;
  /** Consecutive failures before a URL counts as down. */
  downAfter: number;
}

/** Every side effect the loop has, passed in: tests can give fast fakes or the real thing. */
export interface MonitorDependencies {
  probe: (url: string) => Promise<ProbeResult>;
  /** Undefined when no webhook is configured. */
  alert: ((alert: Alert) => Promise<Delivery>) | undefined;
  /** Called after every round of checks (persist the state). */
  save: (state: MonitorState) => Promise<void>;
  /** Called after every check (metrics). */
  observe: (url: string, result: ProbeResult) => void;
  /** One JSON-able record per line of the log. */
  log: (entry: Record<string, unknown>) => void;
  /** Wall-clock milliseconds since the epoch. */
  now: () => number;
  /** Resolves after `ms`, or early when `signal` aborts. */
  sleep: (ms: number, signal: AbortSignal) => Promise<void>;
}

/**
 * Checks every URL each interval until `stop` aborts, and returns the state for the summary.
 * A URL goes down after `downAfter` consecutive failures and up on the first success after
 * that; each change is logged and alerted once (a restart with the same state file does not
 * alert again). Starting up is not a change: unknown → up is silent, unknown → down alerts.
 */
export async function runMonitor(
  options: MonitorOptions,
  state: MonitorState,
  deps: MonitorDependencies,
  stop: AbortSignal,
): Promise<MonitorState> {
  const iso = () => new Date(deps.now()).toISOString();
  for (const url of options.urls) state.urls[url] ??= emptyHistory(iso());

  while (!stop.aborted) {
    const roundStarted = deps.now();
    await Promise.all(
      options.urls.map(async (url) => {
        const result = await deps.probe(url);
        deps.observe(url, result);
        await record(url, state.urls[url]!, result);
      }),
    );
    await deps.save(state);
    const wait = roundStarted + options.intervalMs - deps.now();
    if (wait > 0) await deps.sleep(wait, stop);
  }
  return state;

  async function record(url: string, history: UrlHistory, result: ProbeResult): Promise<void> {
    history.checks += 1;
    history.latenciesMs.push(result.latencyMs);
    if (history.latenciesMs.length > MAX_LATENCIES) history.latenciesMs.shift();
    if (result.ok) {
      history.consecutiveFailures = 0;
      if (history.state === 'up') return;
      const previous = history.state;
      const downForSeconds = Math.round((deps.now() - Date.parse(history.since)) / 1000);
      history.state = 'up';
      history.since = iso();
      deps.log({ level: 'info', msg: 'up', url, status: result.status });
      if (previous === 'down') {
        await notify({
          event: 'up',
          url,
          at: history.since,
          downForSeconds,
          source: 'users-api monitor',
        });
      }
      return;
    }
    history.failures += 1;
    history.consecutiveFailures += 1;
    deps.log({
      level: 'warn',
      msg: 'check failed',
      url,
      reason: result.reason,
      consecutiveFailures: history.consecutiveFailures,
    });
    if (history.state === 'down' || history.consecutiveFailures < options.downAfter) return;
    history.state = 'down';
    history.since = iso();
    deps.log({ level: 'error', msg: 'down', url, reason: result.reason });
    await notify({
      event: 'down',
      url,
      at: history.since,
      reason: result.reason ?? 'failed',
      consecutiveFailures: history.consecutiveFailures,
      source: 'users-api monitor',
    });
  }

  async function notify(alert: Alert): Promise<void> {
    if (deps.alert === undefined) return;
    const delivery = await deps.alert(alert);
    if (delivery.delivered) {
      deps.log({
        level: 'info',
        msg: 'alert sent',
        event: alert.event,
        url: alert.url,
        attempts: delivery.attempts,
      });
    } else {
      // The state change stands (one alert per change); the operator sees the failure here.
      deps.log({
        level: 'error',
        msg: 'alert not delivered',
        event: alert.event,
        url: alert.url,
        error: delivery.error,
      });
    }
  }
}

/** One line per URL: state, uptime %, checks, failures, p50/p95 latency. */
export function summarizeMonitor(state: MonitorState, urls: readonly string[]): string[] {
  return urls.map((url) => {
    const history = state.urls[url] ?? emptyHistory(new Date(0).toISOString());
    const uptime =
      history.checks === 0
        ? 'n/a'
        : `${(((history.checks - history.failures) / history.checks) * 100).toFixed(2)}%`;
    const sorted = [...history.latenciesMs].sort((a, b) => a - b);
    return (
      `${url}: ${history.state}, uptime ${uptime}, ${history.checks} checks, ` +
      `${history.failures} failures, p50 ${percentile(sorted, 50)}, p95 ${percentile(sorted, 95)}`
    );
  });
}

/** Nearest-rank percentile of sorted values, as `12.3ms`. */
function percentile(sorted: readonly number[], p: number): string {
  if (sorted.length === 0) return 'n/a';
  const value = sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)]!;
  return `${Math.round(value * 10) / 10}ms`;
}
