import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sql } from 'kysely';
import { writesUnavailable } from '../../src/db/begin-write-transaction.js';
import type { Database } from '../../src/db/database.js';
import {
  isDatabaseCorruption,
  isDatabaseDataError,
  isDatabaseFailure,
} from '../../src/db/is-database-failure.js';
import { mariadbPairSuite, startMysqlApp } from '../helpers/mariadb.js';

const pairSuite = mariadbPairSuite();
const CSV_ROW = 'NAME,STREET,CITY,STATE,USER_DATE\nAda,S,C,NY,01/01/01\n';

/** What `statement` threw on the server (the test fails if it succeeded). */
async function serverError(statement: Promise<unknown>): Promise<Error> {
  const error = await statement.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  assert.ok(error instanceof Error, 'expected the statement to fail');
  return error;
}

async function append(url: string) {
  const response = await fetch(`${url}/addtosql?mode=append`, {
    method: 'POST',
    headers: { 'content-type': 'text/csv' },
    body: CSV_ROW,
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

function insertUser(db: Database, user: { id?: number; name: unknown; state?: unknown }) {
  return sql`INSERT INTO users (${sql.raw(user.id === undefined ? '' : 'id, ')}name, street, city, state, user_date)
    VALUES (${sql.raw(user.id === undefined ? '' : `${user.id}, `)}${user.name}, 'S', 'C', ${user.state ?? 'NY'}, '01/01/01')`.execute(
    db.write,
  );
}

describe('errors named for what failed, on the MariaDB pair', { timeout: 600_000 }, () => {
  pairSuite.register();

  it('values MariaDB refuses are data errors, never "primary unavailable"', async (t) => {
    const { db } = await startMysqlApp(t, pairSuite.require());
    await insertUser(db, { id: 1, name: 'Ada' });
    const refused = {
      ER_DATA_TOO_LONG: await serverError(insertUser(db, { name: 'x'.repeat(256) })),
      ER_DATA_TOO_LONG_STATE: await serverError(insertUser(db, { name: 'Ada', state: 'NYC' })),
      ER_BAD_NULL_ERROR: await serverError(insertUser(db, { name: null })),
      ER_DUP_ENTRY: await serverError(insertUser(db, { id: 1, name: 'Ada' })),
      ER_TRUNCATED_WRONG_VALUE_FOR_FIELD: await serverError(
        insertUser(db, { name: sql`UNHEX('C328')` }),
      ),
    };
    for (const [name, error] of Object.entries(refused)) {
      const code = (error as { code?: string }).code;
      assert.equal(code, name.replace(/_STATE$/, ''), error.message);
      assert.equal(isDatabaseFailure(error), false, `${name}: ${error.message}`);
      assert.equal(isDatabaseCorruption(error), false, name);
      assert.equal(isDatabaseDataError(error), true, name);
      assert.equal(writesUnavailable(db, error), error, name);
    }
  });

  it('a read-only primary and a stopped one are outages: writes answer 503 ERR_DB_PRIMARY_UNAVAILABLE', async (t) => {
    const pair = pairSuite.require();
    const { url, db } = await startMysqlApp(t, pair);
    const lockWait = await db.write.connection().execute(async (holder) => {
      await sql`BEGIN`.execute(holder);
      await sql`SELECT data_version FROM data_state WHERE id = 1 FOR UPDATE`.execute(holder);
      try {
        return await db.write.connection().execute(async (waiter) => {
          await sql`SET SESSION innodb_lock_wait_timeout = 1`.execute(waiter);
          return serverError(
            sql`UPDATE data_state SET data_version = 0 WHERE id = 1`.execute(waiter),
          );
        });
      } finally {
        await sql`ROLLBACK`.execute(holder);
      }
    });
    assert.equal((lockWait as { code?: string }).code, 'ER_LOCK_WAIT_TIMEOUT');
    assert.equal(isDatabaseFailure(lockWait), true);

    pair.primary.sql('SET GLOBAL read_only = 1');
    let readOnly: Error;
    let write: Awaited<ReturnType<typeof append>>;
    try {
      readOnly = await serverError(insertUser(db, { name: 'Ada' }));
      write = await append(url);
    } finally {
      pair.primary.sql('SET GLOBAL read_only = 0');
    }
    assert.equal((readOnly as { code?: string }).code, 'ER_OPTION_PREVENTS_STATEMENT');
    assert.equal(isDatabaseFailure(readOnly), true);
    assert.equal(isDatabaseDataError(readOnly), false);
    assert.equal(write.status, 503, JSON.stringify(write.body));
    assert.equal(write.body.code, 'ERR_DB_PRIMARY_UNAVAILABLE');

    await pair.primary.kill();
    const refused = await serverError(insertUser(db, { name: 'Ada' }));
    assert.equal(isDatabaseFailure(refused), true, refused.message);
    const cut = await append(url);
    assert.equal(cut.status, 503, JSON.stringify(cut.body));
    assert.equal(cut.body.code, 'ERR_DB_PRIMARY_UNAVAILABLE');
  });

  it('a control character in a query value is a 400 on MariaDB too', async (t) => {
    const { url } = await startMysqlApp(t, pairSuite.require());
    assert.equal((await fetch(`${url}/addtosql`, { method: 'POST' })).status, 200);
    for (const path of [
      '/api?q=%00',
      '/api/count?q=%00',
      '/api?city=a%00',
      '/api/count?name=%1F',
    ]) {
      const response = await fetch(`${url}${path}`);
      const body = await response.text();
      assert.equal(response.status, 400, `${path}: ${body}`);
      assert.equal(response.headers.get('content-type'), 'application/problem+json; charset=utf-8');
      assert.match(body, /must not contain control characters/);
    }
  });
});
