import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { removeStaleLabs, TEMP_PREFIX, type LabState } from '../../scripts/fault-lab.js';

/** A lab's state folder in the temp folder, owned by `ownerPid`, with nothing else made. */
function fakeLab(ownerPid: number, ownerPidNamespace: string): string {
  const id = randomBytes(3).toString('hex');
  const dir = join(tmpdir(), `${TEMP_PREFIX}${id}-unit`);
  mkdirSync(dir);
  const state: LabState = {
    id,
    ownerPid,
    ownerPidNamespace,
    dir,
    subnet: '10.254.254',
    // No such namespace: deleting it is a no-op.
    switchNamespace: `users-api-unit-${id}`,
    namespaces: {},
    clientLink: undefined,
    mounts: [],
    processes: {},
    faults: [],
    adminToken: '',
    appPassword: '',
    dbAdminPassword: '',
    replPassword: '',
    statsPassword: '',
    env: {},
  };
  writeFileSync(join(dir, 'state.json'), JSON.stringify(state));
  return dir;
}

describe('stale labs', { skip: process.platform !== 'linux' && 'needs /proc' }, () => {
  it('removes a lab whose owner is gone, not one owned from another PID namespace', async (t) => {
    if (spawnSync('ip', ['-V']).status !== 0) {
      if (process.env.CI === 'true') assert.fail('ip (iproute2) is missing');
      t.skip('SKIPPED: ip (iproute2) is missing');
      return;
    }
    // A pid that was ours and is gone now.
    const gone = spawnSync('true').pid;
    const ours = fakeLab(gone, readlinkSync('/proc/self/ns/pid'));
    // The same number in another container's PID namespace may well be a running test.
    const theirs = fakeLab(gone, 'pid:[1]');
    t.after(() => rmSync(theirs, { recursive: true, force: true }));
    await removeStaleLabs();
    assert.equal(existsSync(ours), false, 'the lab of a gone owner is removed');
    assert.equal(existsSync(theirs), true, 'a lab owned from another PID namespace is kept');
  });
});
