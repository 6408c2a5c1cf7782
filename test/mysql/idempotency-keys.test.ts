import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import type { MariadbServer } from '../../scripts/mariadb-pair.js';
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
import { eventually, mariadbPairSuite, startMysqlApp } from '../helpers/mariadb.js';
import type { WriteTarget } from '../helpers/single-user-drills.js';

const pairSuite = mariadbPairSuite();
const TOKEN = 'idempotency-keys-mysql-token';

async function startInstance(
  t: TestContext,
  env: Record<string, string> = {},
): Promise<WriteTarget> {
  const { url, db } = await startMysqlApp(t, pairSuite.require(), {
    ADMIN_TOKEN: TOKEN,
    API_CACHE_CHECK_MS: '0',
    ...env,
  });
  await eventually(() => db.replicaStates()[0]?.healthy === true, 'the replica is in rotation');
  return { url, token: TOKEN };
}

/** Rows with this NAME on the primary, counted by root (not through the app). */
function rowsOnPrimary(primary: MariadbServer, name: string): number {
  return Number(primary.sql(`SELECT COUNT(*) FROM users.users WHERE name = '${name}'`).trim());
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
