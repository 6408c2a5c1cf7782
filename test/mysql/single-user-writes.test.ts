import assert from 'node:assert/strict';
import { describe, it, type TestContext } from 'node:test';
import { eventually, mariadbPairSuite, startPairInstance } from '../helpers/mariadb.js';
import {
  createUser,
  drillBadWrites,
  drillConcurrentWritersOneWins,
  drillEtagsOutliveNoReplace,
  drillRandomWritesMatchAFullBuild,
  drillUserLifecycle,
  send,
  type WriteTarget,
} from '../helpers/single-user-drills.js';

const pairSuite = mariadbPairSuite();
const TOKEN = 'single-user-writes-mysql-token';

/** An instance on the pair (writes to the primary, reads from the replica), over real HTTP. */
function startInstance(t: TestContext, env: Record<string, string> = {}): Promise<WriteTarget> {
  return startPairInstance(t, pairSuite.require(), TOKEN, {
    API_CACHE_MAX_BYTES: '0',
    API_CACHE_CHECK_MS: '250',
    ...env,
  });
}

describe('single-user writes on MariaDB primary + replica', { timeout: 600_000 }, () => {
  pairSuite.register();

  it('create, read with ETag, merge patch, replace and delete (reads on the replica)', async (t) => {
    await drillUserLifecycle(await startInstance(t));
  });

  it('refuses bad writes with their own status and changes nothing', async (t) => {
    await drillBadWrites(await startInstance(t));
  });

  it("an ETag from before a replace import never matches the new table's user", async (t) => {
    await drillEtagsOutliveNoReplace(await startInstance(t));
  });

  it('two instances writing the same user at once: one wins, the other gets 412', async (t) => {
    await drillConcurrentWritersOneWins(await startInstance(t), await startInstance(t));
  });

  it('another instance shows a write within API_CACHE_CHECK_MS; bodies equal a full build', async (t) => {
    const a = await startInstance(t);
    const b = await startInstance(t);
    const { id } = await createUser(a, {
      NAME: 'Seen On B',
      STREET: '1 Replica Way',
      CITY: 'Austin',
      STATE: 'TX',
      USER_DATE: '02/03/04',
    });
    await eventually(
      async () => {
        const users = (await send(b, 'GET', '/api', { auth: false })).body as { NAME: string }[];
        return users.at(-1)?.NAME === 'Seen On B';
      },
      'instance B serves the user written through A',
      10_000,
    );
    assert.equal((await send(b, 'GET', `/api/users/${id}`, { auth: false })).status, 200);
    const full = await startInstance(t, { API_CACHE_MAX_BYTES: String(64 * 1024 * 1024) });
    const fullBuild = async () =>
      Buffer.from(
        await (
          await fetch(`${full.url}/api`, { headers: { 'accept-encoding': 'identity' } })
        ).arrayBuffer(),
      );
    await drillRandomWritesMatchAFullBuild(a, fullBuild, 30, 11);
  });
});
