import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backupFileName, isBackupFileName } from '../../src/backup/backup-format.js';
import { selectExpiredBackups } from '../../src/backup/select-expired-backups.js';

const at = (hour: number) => backupFileName(new Date(Date.UTC(2025, 0, 1, hour)));

describe('selectExpiredBackups', () => {
  it('selects every backup beyond the keep newest, oldest included', () => {
    const names = [at(6), at(0), at(18), at(12), 'notes.txt', `.${at(19)}.123.tmp`];
    assert.deepEqual(selectExpiredBackups(names, 2, at(18)), [at(6), at(0)]);
    assert.deepEqual(selectExpiredBackups(names, 4, at(18)), []);
  });

  it('never selects the backup just written, even when names sort it lower', () => {
    assert.deepEqual(selectExpiredBackups([at(1), at(2), at(3)], 1, at(1)), [at(2)]);
  });
});

describe('backup file names', () => {
  it('are users-<UTC time with milliseconds>.ndjson.gz and nothing else matches', () => {
    assert.equal(at(6), 'users-20250101T060000.000Z.ndjson.gz');
    assert.ok(isBackupFileName(at(6)));
    for (const name of ['users.db', `${at(6)}.tmp`, `../${at(6)}`, 'users-2025.ndjson.gz']) {
      assert.ok(!isBackupFileName(name), name);
    }
  });
});
