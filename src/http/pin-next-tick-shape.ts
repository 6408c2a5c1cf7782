import { executionAsyncResource } from 'node:async_hooks';

let pinned: object | undefined;

/**
 * Keeps one of node's `process.nextTick` objects alive for the life of the process, so that V8
 * keeps the hidden classes of the literal `nextTick` builds them with: without it, about half
 * of the starts fell into a slow state for good (/healthcheck at 27k-35k req/s, not 45k-60k).
 * @see docs/design-notes.md, "The next-tick pin": the finding, the figures and how they were taken.
 */
export function pinNextTickShape(): void {
  if (pinned !== undefined) return;
  process.nextTick(() => {
    // Inside a tick's callback, the execution's async resource is the tick object itself.
    pinned ??= executionAsyncResource();
  });
}

/** The tick object `pinNextTickShape` holds (undefined before its tick has run). */
export function pinnedNextTick(): object | undefined {
  return pinned;
}
