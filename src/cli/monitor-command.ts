import { CommanderError } from 'commander';
import { loadMonitorState, saveMonitorState, type MonitorState } from '../monitor/monitor-state.js';
import { formatDuration, parseDuration } from '../monitor/parse-duration.js';
import { probeUrl } from '../monitor/probe-url.js';
import { runMonitor, summarizeMonitor } from '../monitor/run-monitor.js';
import { sendAlert } from '../monitor/send-alert.js';
import { serveProbeMetrics, type ProbeMetricsServer } from '../monitor/serve-probe-metrics.js';

/** The options as commander hands them over: strings, checked here. */
export interface MonitorCommandOptions {
  url: string[];
  interval: string;
  timeout: string;
  expect?: string;
  maxLatency?: string;
  downAfter: string;
  webhook?: string;
  webhookTimeout: string;
  webhookRetries: string;
  state?: string;
  port?: string;
  host: string;
}

export interface MonitorCommandIo {
  stdout: (line: string) => void;
  stopSignal: () => Promise<string>;
}

/** Between webhook attempts: 1 s, then 2 s, then 3 s… */
const WEBHOOK_RETRY_DELAY_MS = 1000;

/**
 * Upper bounds of the duration options. @NOTE setTimeout (and AbortSignal.timeout) fire after
 * 1 ms for anything above 2^31 - 1 ms (~24.8 days), so an unbounded `--interval 600h` would
 * probe in a tight loop. A check longer than an hour, or a latency limit above it, is a
 * mistake rather than a setting.
 */
const MAX_INTERVAL = { ms: 24 * 3_600_000, text: '24h' };
const MAX_TIMEOUT = { ms: 3_600_000, text: '1h' };

/**
 * `users-api monitor`: checks URLs until SIGINT/SIGTERM, alerts the webhook on each change
 * of state, then prints a summary. Bad arguments throw a usage error (exit 2).
 */
export async function runMonitorCommand(
  options: MonitorCommandOptions,
  io: MonitorCommandIo,
): Promise<void> {
  const settings = checkOptions(options);
  const log = (entry: Record<string, unknown>) =>
    io.stdout(JSON.stringify({ time: new Date().toISOString(), ...entry }));
  const state: MonitorState =
    settings.statePath === undefined
      ? { version: 1, urls: {} }
      : await loadMonitorState(settings.statePath);

  let metrics: ProbeMetricsServer | undefined;
  if (settings.port !== undefined) {
    metrics = await serveProbeMetrics(options.host, settings.port);
    log({ level: 'info', msg: 'metrics listening', url: metrics.url });
  }
  const stop = new AbortController();
  void io.stopSignal().then((signal) => {
    log({ level: 'info', msg: 'stopping', signal });
    stop.abort();
  });
  log({
    level: 'info',
    msg: 'monitoring',
    urls: settings.urls,
    interval: formatDuration(settings.intervalMs),
    timeout: formatDuration(settings.timeoutMs),
    downAfter: settings.downAfter,
  });

  const webhook = settings.webhook;
  try {
    await runMonitor(
      { urls: settings.urls, intervalMs: settings.intervalMs, downAfter: settings.downAfter },
      state,
      {
        probe: (url) =>
          probeUrl(url, {
            timeoutMs: settings.timeoutMs,
            expect: options.expect,
            maxLatencyMs: settings.maxLatencyMs,
          }),
        alert:
          webhook === undefined
            ? undefined
            : (alert) =>
                sendAlert(webhook, alert, {
                  timeoutMs: settings.webhookTimeoutMs,
                  retries: settings.webhookRetries,
                  retryDelayMs: WEBHOOK_RETRY_DELAY_MS,
                  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
                }),
        save: (current) =>
          settings.statePath === undefined
            ? Promise.resolve()
            : saveMonitorState(settings.statePath, current),
        observe: (url, result) => metrics?.observe(url, result),
        log,
        now: Date.now,
        sleep: abortableSleep,
      },
      stop.signal,
    );
  } finally {
    await metrics?.close();
  }
  io.stdout('summary:');
  for (const line of summarizeMonitor(state, settings.urls)) io.stdout(`  ${line}`);
}

function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}

function checkOptions(options: MonitorCommandOptions) {
  const usage = (message: string): never => {
    throw new CommanderError(2, 'users-api.usage', message);
  };
  if (options.url.length === 0) usage('monitor needs at least one --url');
  for (const url of [...options.url, ...(options.webhook === undefined ? [] : [options.webhook])]) {
    if (!isHttpUrl(url)) usage(`${JSON.stringify(url)} is not an http:// or https:// URL`);
  }
  const duration = (name: string, text: string, max: { ms: number; text: string }): number => {
    const ms = parseDuration(text);
    if (ms === undefined || ms <= 0) {
      return usage(`--${name} ${JSON.stringify(text)} is not a duration such as 500ms, 30s or 5m`);
    }
    return ms <= max.ms ? ms : usage(`--${name} ${JSON.stringify(text)} is over ${max.text}`);
  };
  const integer = (name: string, text: string, min: number, max: number): number => {
    const value = /^\d+$/.test(text) ? Number(text) : NaN;
    return value >= min && value <= max
      ? value
      : usage(`--${name} ${JSON.stringify(text)} must be an integer from ${min} to ${max}`);
  };
  if (options.expect === '') usage('--expect needs some text to look for');
  return {
    urls: [...new Set(options.url)],
    intervalMs: duration('interval', options.interval, MAX_INTERVAL),
    timeoutMs: duration('timeout', options.timeout, MAX_TIMEOUT),
    maxLatencyMs:
      options.maxLatency === undefined
        ? undefined
        : duration('max-latency', options.maxLatency, MAX_TIMEOUT),
    downAfter: integer('down-after', options.downAfter, 1, 1000),
    webhook: options.webhook,
    webhookTimeoutMs: duration('webhook-timeout', options.webhookTimeout, MAX_TIMEOUT),
    webhookRetries: integer('webhook-retries', options.webhookRetries, 0, 10),
    statePath: options.state,
    port: options.port === undefined ? undefined : integer('port', options.port, 0, 65535),
  };
}

function isHttpUrl(text: string): boolean {
  try {
    const url = new URL(text);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}
