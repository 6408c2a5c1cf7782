import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import type { MariadbServer } from '../../scripts/mariadb-pair.js';
import { WRITE_LOCK } from '../../src/db/dialects/mysql/named-lock.js';
import {
  createKeyed,
  drillConcurrentSameKey,
  drillKeyedCreateReplays,
  drillKeyMisuseIsRefused,
  drillReplayFollowsTheUser,
  newKey,
  userNamed,
} from '../helpers/idempotency-drills.js';
import { startCommitDroppingProxy } from '../helpers/commit-dropping-proxy.js';
import { eventually, mariadbPairSuite, startPairInstance } from '../helpers/mariadb.js';
import type { WriteTarget } from '../helpers/single-user-drills.js';

const pairSuite = mariadbPairSuite();
const TOKEN = 'idempotency-keys-mysql-token';

function startInstance(t: TestContext, env: Record<string, string> = {}): Promise<WriteTarget> {
  return startPairInstance(t, pairSuite.require(), TOKEN, { API_CACHE_CHECK_MS: '0', ...env });
}

/** Rows with this NAME on the primary, counted by root (not through the app). */
function rowsOnPrimary(primary: MariadbServer, name: string): number {
  return Number(primary.sql(`SELECT COUNT(*) FROM users.users WHERE name = '${name}'`).trim());
}

/**
 * Holds the write lock every instance's writers take (GET_LOCK) in a root session of its own for
 * `seconds`, as a long import on another instance would; resolves once it is held.
 */
async function holdWriteLock(t: TestContext, server: MariadbServer, seconds: number) {
  const marker = `SLEEP(${seconds}.0${process.pid % 10})`;
  const child = spawn(
    'mariadb',
    [
      `--socket=${join(server.dir, 'mysqld.sock')}`,
      '-uroot',
      '--batch',
      '-e',
      `SELECT GET_LOCK('${WRITE_LOCK}', 10); SELECT ${marker}; SELECT RELEASE_LOCK('${WRITE_LOCK}')`,
    ],
    { stdio: 'ignore' },
  );
  const ended = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  t.after(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await ended;
  });
  await eventually(
    () =>
      Number(
        server
          .sql(
            `SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT ${marker}%'`,
          )
          .trim(),
      ) === 1,
    'the write lock is held',
    10_000,
  );
  return { ended };
}

describe('Idempotency-Key on MariaDB primary + replica', { timeout: 600_000 }, () => {
  pairSuite.register();

  it('the same key twice: one row, the first answer replayed', async (t) => {
    await drillKeyedCreateReplays(await startInstance(t));
  });

  it('the same key with another request is 422; malformed keys are 400; neither writes', async (t) => {
    await drillKeyMisuseIsRefused(await startInstance(t));
  });

  it('requests with one key at once on two instances: exactly one write', async (t) => {
    await drillConcurrentSameKey([await startInstance(t), await startInstance(t)]);
  });

  it('the same key while the first request waits for the write lock: 409, then the replay', async (t) => {
    const { primary } = pairSuite.require();
    const a = await startInstance(t);
    const b = await startInstance(t);
    const name = `Waiting ${Date.now()}`;
    const key = newKey('waiting');
    const hold = await holdWriteLock(t, primary, 3);
    const first = createKeyed(a, key, userNamed(name));
    // Once the first is waiting for the lock on instance a.
    await new Promise((resolve) => setTimeout(resolve, 500));
    const sameInstance = await createKeyed(a, key, userNamed(name));
    assert.equal(sameInstance.status, 409, JSON.stringify(sameInstance.body));
    assert.equal((sameInstance.body as { code: string }).code, 'ERR_IDEMPOTENCY_KEY_IN_USE');
    const otherInstance = createKeyed(b, key, userNamed(name));
    await hold.ended;
    const [created, fromB] = await Promise.all([first, otherInstance]);
    assert.equal(created.status, 201, JSON.stringify(created.body));
    // b waited for the lock too, then found the key a had committed: 409, or its replay.
    assert.ok(fromB.status === 409 || fromB.status === 201, `b: ${fromB.status}`);
    if (fromB.status === 201) assert.equal(fromB.headers.get('idempotent-replayed'), 'true');
    const retry = await createKeyed(b, key, userNamed(name));
    assert.equal(retry.status, 201);
    assert.equal(retry.headers.get('idempotent-replayed'), 'true');
    assert.equal(rowsOnPrimary(primary, name), 1);
  });

  it('a replay shows the user as now; deleted or replaced since, it is 410', async (t) => {
    await drillReplayFollowsTheUser(await startInstance(t));
  });

  it('a create whose answer was lost after its commit: the retry with its key replays', async (t) => {
    const pair = pairSuite.require();
    const proxy = await startCommitDroppingProxy('127.0.0.1', pair.primary.port);
    t.after(() => proxy.close());
    const throughProxy = new URL(pair.primary.url);
    throughProxy.port = String(proxy.port);
    const target = await startInstance(t, { DATABASE_URL: throughProxy.toString() });

    /** A create whose COMMIT reaches the primary and whose answer never comes back. */
    const createAndLoseTheAnswer = async (key: string | undefined, name: string) => {
      const dropped = proxy.armOnce();
      const first = await createKeyed(target, key, userNamed(name));
      await dropped;
      assert.ok(first.status >= 500, `the client saw a failure: ${first.status}`);
      assert.equal(rowsOnPrimary(pair.primary, name), 1, 'and yet the primary committed');
    };
    /** The client's retry, repeated while the instance still finds the primary out (bounded). */
    const retry = async (key: string | undefined, name: string) => {
      const deadline = Date.now() + 15_000;
      for (;;) {
        const answer = await createKeyed(target, key, userNamed(name));
        if (answer.status === 201 || Date.now() > deadline) return answer;
        assert.ok(answer.status === 409 || answer.status >= 500, `retry: ${answer.status}`);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    };

    const name = `Lost Answer ${Date.now()}`;
    const key = newKey('lost');
    await createAndLoseTheAnswer(key, name);
    const replayed = await retry(key, name);
    assert.equal(replayed.status, 201, JSON.stringify(replayed.body));
    assert.equal(replayed.headers.get('idempotent-replayed'), 'true');
    assert.equal(rowsOnPrimary(pair.primary, name), 1, 'the retry did not write a second row');

    // Without a key the same retry duplicates: what the key is for.
    const unkeyed = `Lost Unkeyed ${Date.now()}`;
    await createAndLoseTheAnswer(undefined, unkeyed);
    assert.equal((await retry(undefined, unkeyed)).status, 201);
    assert.equal(rowsOnPrimary(pair.primary, unkeyed), 2);
  });
});
