import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cacheReader } from '../../src/metrics/cache-reader.js';

describe('cacheReader', () => {
  it('shares a value until it is older than maxAgeMs', async () => {
    const clock = { now: 0 };
    let reads = 0;
    const read = cacheReader(() => Promise.resolve((reads += 1)), {
      maxAgeMs: 100,
      now: () => clock.now,
    });
    assert.equal(await read(), 1);
    clock.now = 99;
    assert.equal(await read(), 1);
    clock.now = 100;
    assert.equal(await read(), 2);
  });

  it('shares one read in flight among concurrent callers', async () => {
    let reads = 0;
    const read = cacheReader(() => Promise.resolve((reads += 1)), { maxAgeMs: 0 });
    assert.deepEqual(await Promise.all([read(), read(), read()]), [1, 1, 1]);
    assert.equal(reads, 1);
  });

  it('does not cache a failure', async () => {
    let fail = true;
    const read = cacheReader(
      () => (fail ? Promise.reject(new Error('database down')) : Promise.resolve(7)),
      { maxAgeMs: 1000 },
    );
    await assert.rejects(read(), /database down/);
    fail = false;
    assert.equal(await read(), 7);
  });
});
