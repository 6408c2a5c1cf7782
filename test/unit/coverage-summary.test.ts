import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  formatCoverageSummary,
  parseLcov,
  summarizeCoverage,
} from '../../scripts/coverage-summary-lib.js';

const LCOV = [
  'TN:',
  'SF:src/a.ts',
  'FN:1,a',
  'FNDA:1,a',
  'FNF:2',
  'FNH:1',
  'BRDA:2,0,0,1',
  'BRF:4',
  'BRH:3',
  'DA:1,1',
  'LH:8',
  'LF:10',
  'end_of_record',
  'SF:src/b.ts',
  'FNF:0',
  'FNH:0',
  'BRF:0',
  'BRH:0',
  'LH:1',
  'LF:4',
  'end_of_record',
  'SF:test/unit/a.test.ts',
  'LH:50',
  'LF:50',
  'end_of_record',
  'SF:scripts/tool.ts',
  'LH:0',
  'LF:30',
  'end_of_record',
  '',
].join('\n');

describe('the coverage summary', () => {
  it('counts src/ only, and ranks its files from the least covered', () => {
    const summary = summarizeCoverage(parseLcov(LCOV), 'src/', 5);
    assert.equal(summary.files, 2);
    assert.deepEqual(summary.total, {
      lines: { found: 14, hit: 9 },
      branches: { found: 4, hit: 3 },
      functions: { found: 2, hit: 1 },
    });
    assert.deepEqual(
      summary.leastCovered.map((file) => file.file),
      ['src/b.ts', 'src/a.ts'],
    );
    const text = formatCoverageSummary(summary, 'src/', ['src/never.ts']);
    assert.match(text, /^total +64\.29% 9\/14 +75\.00% 3\/4 +50\.00% 1\/2$/m);
    assert.match(text, /^src\/b\.ts +25\.00% 1\/4 +100\.00% 0\/0/m);
    assert.match(text, /Loaded by no test \(not in the figures; .*\): src\/never\.ts$/);
  });

  it('refuses an lcov file that records a file twice', () => {
    assert.throws(() => parseLcov(`${LCOV}SF:src/a.ts\nLF:1\nLH:1\nend_of_record\n`), {
      message: 'the lcov file records src/a.ts twice',
    });
  });
});
