import { executionAsyncResource } from 'node:async_hooks';

let pinned: object | undefined;

/**
 * Keeps one of node's `process.nextTick` objects alive for the life of the process, so that V8
 * keeps the hidden classes (maps) of the object literal `nextTick` builds them with. node:http
 * queues several ticks per request (endReadable, afterWriteTick, resume_, onFinish).
 *
 * Without it, in about half of the service's starts (7 of 15 here), a point came under load
 * after which the literal's property definitions went MEGAMORPHIC (`%DebugPrint` of
 * `process.nextTick` from an `--allow-natives-syntax` preload), and node's optimised stream code
 * defined the properties of every tick object through the runtime
 * (`Runtime_DefineKeyedOwnPropertyInLiteral`, with `MigrateToMap` and `FeedbackNexus::ic_state`
 * under it in `perf`): `/healthcheck` then answered 27k-35k req/s where a start without it
 * answered 45k-60k, for the rest of the process. A bare node:http hello-world never showed it.
 * V8's map log (`--log-maps`) showed new maps being made for the literal's second property
 * from its first: the old ones had been collected. The likely mechanism is a full GC that ran
 * while no tick object was alive, after which that runtime function, finding the map its
 * feedback recorded gone, marks the feedback megamorphic. With one tick object held (as a
 * preload in 12 starts, by this function in 6), 0 of 18 showed it. The experiment script was
 * not committed; the figures come from `perf record -e cpu-clock` under `wrk -t2 -c32` after
 * 3 s each of `/api` and `/api?state=NY&limit=100` on 10,000 users.
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
