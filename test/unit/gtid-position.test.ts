import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { gtidBehind, parseGtidPosition } from '../../src/db/gtid-position.js';

describe('GTID positions', () => {
  it('reads one sequence number per domain', () => {
    assert.deepEqual(
      [...parseGtidPosition('0-1-42,1-3-7')],
      [
        [0, 42],
        [1, 7],
      ],
    );
    assert.deepEqual([...parseGtidPosition('')], []);
  });

  it('counts the transactions a position lacks, per domain', () => {
    assert.equal(gtidBehind('0-1-40', '0-1-42').transactions, 2);
    assert.equal(gtidBehind('0-1-42', '0-1-40').transactions, 0, 'ahead is not behind');
    assert.equal(gtidBehind('0-1-40', '0-1-42,1-2-3').transactions, 5, 'a missing domain counts');
    assert.equal(gtidBehind('', '').transactions, 0);
  });
});
