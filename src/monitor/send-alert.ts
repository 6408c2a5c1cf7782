import { formatDuration } from './parse-duration.js';

/** The JSON body POSTed to the webhook on every change of state. */
export interface Alert {
  /** `down`: failed the last N checks; `up`: answering again after being down. */
  event: 'down' | 'up';
  url: string;
  /** ISO time of the check that changed the state. */
  at: string;
  /** Why the last check failed (down alerts). */
  reason?: string;
  /** Consecutive failed checks (down alerts). */
  consecutiveFailures?: number;
  /** How long it was down, in seconds (up alerts). */
  downForSeconds?: number;
  source: 'users-api monitor';
}

export interface WebhookOptions {
  /** Each attempt's limit. */
  timeoutMs: number;
  /** Attempts after the first one. */
  retries: number;
  /** Wait before retry n is n × this (1 s, 2 s, … by default). */
  retryDelayMs: number;
  sleep: (ms: number) => Promise<void>;
  fetchUrl?: typeof fetch;
}

export type Delivery = { delivered: true; attempts: number } | { delivered: false; error: string };

/** POSTs the alert as JSON, retrying on a network error, a timeout or a non-2xx answer. */
export async function sendAlert(
  webhook: string,
  alert: Alert,
  options: WebhookOptions,
): Promise<Delivery> {
  const fetchUrl = options.fetchUrl ?? fetch;
  let error = '';
  for (let attempt = 1; attempt <= options.retries + 1; attempt += 1) {
    if (attempt > 1) await options.sleep(options.retryDelayMs * (attempt - 1));
    try {
      const response = await fetchUrl(webhook, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'users-api-monitor' },
        body: JSON.stringify(alert),
        signal: AbortSignal.timeout(options.timeoutMs),
        redirect: 'manual',
      });
      // Drain the body so the connection can be reused; its content does not matter.
      await response.arrayBuffer();
      if (response.ok) return { delivered: true, attempts: attempt };
      error = `status ${response.status}`;
    } catch (thrown) {
      error =
        thrown instanceof Error && thrown.name === 'TimeoutError'
          ? `timeout after ${formatDuration(options.timeoutMs)}`
          : thrown instanceof Error
            ? `${thrown.message}${thrown.cause instanceof Error ? `: ${thrown.cause.message}` : ''}`
            : String(thrown);
    }
  }
  return { delivered: false, error: `${options.retries + 1} attempts failed, last: ${error}` };
}
