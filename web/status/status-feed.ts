import { ApiError, getJson } from '../shared/dom.js';
import type { StatusSnapshot } from './status-snapshot.js';

export type FeedState =
  /** Opening the stream; nothing received on it yet. */
  | { kind: 'connecting' }
  /** Snapshots are arriving. */
  | { kind: 'live' }
  /** The stream dropped or was refused; `reason` in plain words, a retry is on its way. */
  | { kind: 'disconnected'; reason: string };

export interface StatusFeedOptions {
  /** `GET /status/events`. */
  eventsUrl: string;
  /** `GET /status.json`: asked once when the stream is refused, to learn why. */
  snapshotUrl: string;
  snapshot(snapshot: StatusSnapshot): void;
  state(state: FeedState): void;
}

/** The first wait before reopening a refused stream; doubled on each failure up to the max. */
const FIRST_RETRY_MS = 2000;
const MAX_RETRY_MS = 60_000;
/** A stream that sends nothing for this long (or 3 update intervals, if longer) is stale. */
const MIN_STALE_MS = 30_000;

/**
 * Status snapshots from `GET /status/events` through EventSource (same origin, so the HTTP Basic
 * login the browser already holds is sent again on every reconnect). The browser reopens a
 * dropped stream by itself (after the server's `retry:`); a refused one (401, 503 busy, a proxy's
 * error page) is closed for good by EventSource, so it is reopened here with a growing delay. A
 * stream that goes silent (a partition: no error, no data) is reopened too.
 */
export function openStatusFeed(options: StatusFeedOptions): { close(): void } {
  let source: EventSource | undefined;
  let retryTimer: ReturnType<typeof setTimeout> | undefined;
  let staleTimer: ReturnType<typeof setTimeout> | undefined;
  let failures = 0;
  let lastEventAt: number | undefined;
  let intervalMs = 0;
  let closed = false;

  const watchForSilence = () => {
    clearTimeout(staleTimer);
    const staleMs = Math.max(MIN_STALE_MS, 3 * intervalMs);
    staleTimer = setTimeout(() => {
      source?.close();
      options.state({
        kind: 'disconnected',
        reason: `no update for ${Math.round(staleMs / 1000)} s`,
      });
      scheduleRetry();
    }, staleMs);
  };

  const scheduleRetry = () => {
    if (closed) return;
    clearTimeout(retryTimer);
    clearTimeout(staleTimer);
    const delay = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.min(failures, 10));
    failures++;
    retryTimer = setTimeout(connect, delay);
  };

  /** Why the stream was refused, from the same route family's JSON answer. */
  const diagnose = async () => {
    try {
      options.snapshot(await getJson<StatusSnapshot>(options.snapshotUrl));
      return 'the live stream was refused; showing a single reading';
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        return 'not logged in: reload the page and log in with the METRICS_TOKEN as password';
      }
      return error instanceof Error ? error.message : String(error);
    }
  };

  const connect = () => {
    if (closed) return;
    source?.close();
    options.state({ kind: 'connecting' });
    const current = new EventSource(options.eventsUrl);
    source = current;
    watchForSilence();
    current.addEventListener('status', (event) => {
      const now = Date.now();
      if (lastEventAt !== undefined) intervalMs = now - lastEventAt;
      lastEventAt = now;
      failures = 0;
      let snapshot: StatusSnapshot;
      try {
        snapshot = JSON.parse((event as MessageEvent<string>).data) as StatusSnapshot;
      } catch {
        // Not a snapshot (a proxy's page, a cut event): skipped; the next event is whole, and
        // a stream that never sends one again goes stale below.
        return;
      }
      options.state({ kind: 'live' });
      options.snapshot(snapshot);
      watchForSilence();
    });
    current.addEventListener('error', () => {
      if (source !== current) return;
      lastEventAt = undefined;
      if (current.readyState === EventSource.CONNECTING) {
        // The browser reconnects by itself after the server's `retry:` delay.
        options.state({ kind: 'disconnected', reason: 'the stream dropped; reconnecting' });
        return;
      }
      clearTimeout(staleTimer);
      void diagnose().then((reason) => {
        if (source !== current || closed) return;
        options.state({ kind: 'disconnected', reason });
        scheduleRetry();
      });
    });
  };

  connect();
  return {
    close() {
      closed = true;
      clearTimeout(retryTimer);
      clearTimeout(staleTimer);
      source?.close();
    },
  };
}
