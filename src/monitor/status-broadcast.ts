import type { StatusSnapshot } from './status-snapshot-schema.js';

export interface StatusListener {
  /** A new snapshot. */
  send(snapshot: StatusSnapshot): void;
  /** The broadcast is closing (the app shuts down): end the stream. */
  end(): void;
}

/** Snapshots for every open status stream, taken once per interval whatever their number. */
export interface StatusBroadcast {
  /**
   * Adds a listener and sends it a snapshot at once; undefined when `maxListeners` are open
   * already. The returned function removes it.
   */
  subscribe(listener: StatusListener): (() => void) | undefined;
  /** Listeners open now. */
  size(): number;
  /** Ends every listener and stops the timer; later subscriptions are refused. */
  close(): void;
}

export interface StatusBroadcastOptions {
  snapshot: () => Promise<StatusSnapshot>;
  intervalMs: number;
  maxListeners: number;
  /** A snapshot that failed (the stream goes on; the next tick tries again). */
  failed: (error: unknown) => void;
}

/**
 * One timer and one snapshot per interval for all listeners, running only while one is open:
 * ten status pages cost what one does. A tick whose snapshot is still being taken (a slow
 * database) is skipped rather than queued.
 */
export function createStatusBroadcast(options: StatusBroadcastOptions): StatusBroadcast {
  const listeners = new Set<StatusListener>();
  let timer: NodeJS.Timeout | undefined;
  let taking = false;
  let closed = false;
  const deliver = async (to: () => Iterable<StatusListener>) => {
    try {
      const snapshot = await options.snapshot();
      for (const listener of to()) listener.send(snapshot);
    } catch (error) {
      options.failed(error);
    }
  };
  const tick = () => {
    if (taking) return;
    taking = true;
    void deliver(() => listeners).finally(() => {
      taking = false;
    });
  };
  return {
    subscribe(listener) {
      if (closed || listeners.size >= options.maxListeners) return undefined;
      listeners.add(listener);
      timer ??= setInterval(tick, options.intervalMs);
      // The first snapshot at once, for this listener only: a page shows data on load.
      void deliver(() => (listeners.has(listener) ? [listener] : []));
      return () => {
        listeners.delete(listener);
        if (listeners.size === 0) {
          clearInterval(timer);
          timer = undefined;
        }
      };
    },
    size: () => listeners.size,
    close() {
      closed = true;
      clearInterval(timer);
      timer = undefined;
      for (const listener of [...listeners]) listener.end();
      listeners.clear();
    },
  };
}
