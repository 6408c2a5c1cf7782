import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { runCli } from '../../src/cli/run-cli.js';
import type { RawEnv } from '../../src/config/env.js';
import { mariadbPairSuite } from '../helpers/mariadb.js';
import { REPO_ROOT } from '../helpers/paths.js';

const pairSuite = mariadbPairSuite();

/** runCli in this process, without a terminal: exit code and every line written. */
async function run(args: string[], env: RawEnv) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(args, {
    env: { LOG_LEVEL: 'silent', ...env },
    stdout: (line) => out.push(line),
    stderr: (line) => err.push(line),
    stopSignal: () => new Promise(() => undefined),
  });
  return { code, out, err };
}

describe('users-api CLI on MariaDB', { timeout: 600_000 }, () => {
  pairSuite.register();

  it('names the MySQL database in its result lines with the password masked', async () => {
    const { primary } = pairSuite.require();
    const password = decodeURIComponent(new URL(primary.url).password);
    const shown = `mysql://app:***@127.0.0.1:${primary.port}/users`;
    const env = { DATABASE_URL: primary.url };
    const migrate = await run(['migrate'], env);
    assert.deepEqual(migrate.out, [
      `applied 0001-create-users, 0002-mysql-utf8mb4, 0003-users-query-indexes, 0004-users-index-names, 0005-replication-heartbeat, 0006-users-row-version, 0007-idempotency-keys to ${shown}`,
    ]);
    const imported = await run(['import', join(REPO_ROOT, 'data/users.csv')], env);
    assert.deepEqual(imported.out, [`imported 1000 users into ${shown} (mode if-empty)`]);
    const restore = await run(['restore', join(REPO_ROOT, 'no-such-backup.ndjson.gz')], env);
    assert.deepEqual(restore.err, [
      `users-api: restore replaces every user in ${shown}: pass --yes to confirm (there is no terminal to ask on)`,
    ]);
    for (const line of [...migrate.out, ...imported.out, ...restore.err]) {
      assert.ok(!line.includes(password), line);
    }
  });

  it('refuses a database that does not exist on the server: one line naming it, exit 1', async () => {
    const { primary } = pairSuite.require();
    const url = new URL(primary.url);
    url.pathname = '/no_such_database';
    for (const args of [['count'], ['import', '--create', join(REPO_ROOT, 'data/users.csv')]]) {
      const result = await run(args, { DATABASE_URL: url.href, DB_CONNECT_TIMEOUT_MS: '2000' });
      assert.equal(result.code, 1, args[0]);
      assert.deepEqual(result.out, []);
      assert.equal(result.err.length, 1, result.err.join('\n'));
      assert.match(result.err[0]!, /no_such_database/);
    }
    assert.equal(primary.sql("SHOW DATABASES LIKE 'no_such_database'"), '');
  });
});
