import { AppError } from '../errors.js';
import type { DatabaseObserver } from './database-observer.js';

/** Counts the snapshot streams held for clients and refuses one past `max`. */
export interface StreamSlots {
  /** Streams running now. */
  active(): number;
  /**
   * Runs `stream` in a slot; throws ERR_STREAMS_BUSY (503, Retry-After) at once when every
   * slot is taken: queueing would only hold more clients on a server that is already full.
   */
  run<T>(stream: () => Promise<T>): Promise<T>;
}

/** How soon a refused client may try again: a stream of a whole table takes seconds. */
const RETRY_AFTER_SECONDS = 2;

export function createStreamSlots(max: number, observer: DatabaseObserver): StreamSlots {
  let active = 0;
  return {
    active: () => active,
    async run(stream) {
      if (active >= max) {
        observer.streamRefused();
        throw new AppError(
          'ERR_STREAMS_BUSY',
          `${max} large responses (MAX_CONCURRENT_STREAMS) are already streaming from this instance; try again shortly, or page with ?limit=`,
          { retryAfterSeconds: RETRY_AFTER_SECONDS },
        );
      }
      active += 1;
      observer.streamsInUse(active);
      try {
        return await stream();
      } finally {
        active -= 1;
        observer.streamsInUse(active);
      }
    },
  };
}
