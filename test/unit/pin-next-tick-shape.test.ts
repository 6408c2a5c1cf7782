import assert from 'node:assert/strict';
import { setImmediate as nextLoop } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { pinNextTickShape, pinnedNextTick } from '../../src/http/pin-next-tick-shape.js';

describe('pinNextTickShape', () => {
  it("holds one of node's own nextTick objects, the same one however often it is called", async () => {
    pinNextTickShape();
    await nextLoop();
    const pinned = pinnedNextTick();
    assert.ok(pinned !== undefined, 'no tick object was pinned');
    // The shape of the literal in node's process.nextTick: what V8 must keep the maps of.
    const symbols = Object.getOwnPropertySymbols(pinned).map((symbol) => symbol.description);
    // Node 24 made AsyncContextFrame the default: its tick objects carry the frame as well.
    const major = Number(process.versions.node.split('.')[0]);
    assert.deepEqual(symbols, [
      'async_id_symbol',
      'trigger_async_id_symbol',
      ...(major >= 24 ? ['kAsyncContextFrame'] : []),
    ]);
    assert.deepEqual(Object.keys(pinned), ['callback', 'args']);
    pinNextTickShape();
    await nextLoop();
    assert.equal(pinnedNextTick(), pinned);
  });
});
