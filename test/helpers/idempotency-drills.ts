import assert from 'node:assert/strict';
import { send, type Answer, type WriteTarget } from './single-user-drills.js';

/** The same assertions on every dialect: Idempotency-Key on POST /api/users and appends. */

let keyCounter = 0;
/** A fresh key, as a structured-field string. */
export function newKey(label = 'key'): string {
  keyCounter += 1;
  return `"${label}-${process.pid}-${Date.now()}-${keyCounter}"`;
}

export function userNamed(name: string): Record<string, string> {
  return { NAME: name, STREET: '1 Retry Road', CITY: 'Albany', STATE: 'NY', USER_DATE: '01/02/03' };
}

/** How many users have exactly this NAME (read through the instance, on the primary's data). */
export async function countNamed(target: WriteTarget, name: string): Promise<number> {
  const answer = await send(target, 'GET', `/api?name=${encodeURIComponent(name)}&fields=NAME`, {
    auth: false,
  });
  assert.equal(answer.status, 200);
  return (answer.body as { NAME: string }[]).filter((user) => user.NAME === name).length;
}

export function createKeyed(
  target: WriteTarget,
  key: string | undefined,
  user: Record<string, string>,
): Promise<Answer> {
  return send(target, 'POST', '/api/users', {
    body: user,
    headers: key === undefined ? {} : { 'idempotency-key': key },
  });
}

function codeOf(answer: Answer): unknown {
  return (answer.body as { code?: unknown }).code;
}

/**
 * The same key twice: one row, and the retry answers what the first did (201, the same
 * Location, ID and ETag), marked as replayed. Without a key, the same body twice is two users.
 */
export async function drillKeyedCreateReplays(target: WriteTarget): Promise<void> {
  const name = `Replayed ${Date.now()}`;
  const key = newKey('replay');
  const first = await createKeyed(target, key, userNamed(name));
  assert.equal(first.status, 201, JSON.stringify(first.body));
  assert.equal(first.headers.get('idempotent-replayed'), null);
  const again = await createKeyed(target, key, userNamed(name));
  assert.equal(again.status, 201, JSON.stringify(again.body));
  assert.equal(again.headers.get('idempotent-replayed'), 'true');
  assert.equal(again.headers.get('location'), first.headers.get('location'));
  assert.equal(again.headers.get('etag'), first.headers.get('etag'));
  assert.deepEqual(again.body, first.body);
  assert.equal(await countNamed(target, name), 1, 'one row for two requests with one key');

  const plain = `Unkeyed ${Date.now()}`;
  assert.equal((await createKeyed(target, undefined, userNamed(plain))).status, 201);
  assert.equal((await createKeyed(target, undefined, userNamed(plain))).status, 201);
  assert.equal(await countNamed(target, plain), 2, 'no key: every request writes, as before');
}

/** The same key with another body is 422; malformed keys are 400; neither writes. */
export async function drillKeyMisuseIsRefused(target: WriteTarget): Promise<void> {
  const name = `Misused ${Date.now()}`;
  const key = newKey('misuse');
  assert.equal((await createKeyed(target, key, userNamed(name))).status, 201);
  const other = await createKeyed(target, key, { ...userNamed(name), CITY: 'Buffalo' });
  assert.equal(other.status, 422, JSON.stringify(other.body));
  assert.equal(codeOf(other), 'ERR_IDEMPOTENCY_KEY_REUSED');
  assert.match(other.headers.get('content-type') ?? '', /^application\/problem\+json/);
  const otherRoute = await send(target, 'POST', '/addtosql?mode=append', {
    body: `NAME,STREET,CITY,STATE,USER_DATE\n${name},1 Retry Road,Albany,NY,01/02/03\n`,
    type: 'text/csv',
    headers: { 'idempotency-key': key },
  });
  assert.equal(otherRoute.status, 422, 'a key is one request, whatever the route');
  assert.equal(await countNamed(target, name), 1);

  const bad = [
    'unquoted-token',
    '""',
    `"${'x'.repeat(256)}"`,
    '"open',
    '"a"; p=1',
    '"a", "b"',
    '"bad \\n escape"',
    '"tab\tinside"',
  ];
  for (const header of bad) {
    const refused = await createKeyed(target, header, userNamed(name));
    assert.equal(refused.status, 400, `${header}: ${JSON.stringify(refused.body)}`);
    assert.equal(codeOf(refused), 'ERR_IDEMPOTENCY_KEY_INVALID');
  }
  assert.equal((await createKeyed(target, `"${'y'.repeat(255)}"`, userNamed(name))).status, 201);
  assert.equal(
    (await createKeyed(target, `"escaped \\"quote\\" and \\\\"`, userNamed(name))).status,
    201,
  );
  assert.equal(await countNamed(target, name), 3, 'malformed keys wrote nothing');
}

/**
 * Requests with one key at once, on one instance or several: exactly one write; every other
 * answer is a 409 (still in flight) or the replay; a retry afterwards replays.
 */
export async function drillConcurrentSameKey(targets: readonly WriteTarget[]): Promise<void> {
  const name = `Concurrent ${Date.now()}`;
  const key = newKey('concurrent');
  const answers = await Promise.all(
    [...targets, ...targets, ...targets].map((target) => createKeyed(target, key, userNamed(name))),
  );
  const statuses = answers.map((answer) => answer.status).sort();
  assert.ok(
    statuses.every((status) => status === 201 || status === 409),
    `statuses: ${statuses.join(', ')}`,
  );
  const created = answers.filter((answer) => answer.status === 201);
  assert.ok(created.length >= 1, `statuses: ${statuses.join(', ')}`);
  for (const refused of answers.filter((answer) => answer.status === 409)) {
    assert.equal(codeOf(refused), 'ERR_IDEMPOTENCY_KEY_IN_USE', JSON.stringify(refused.body));
  }
  const ids = new Set(created.map((answer) => (answer.body as { ID: number }).ID));
  assert.equal(ids.size, 1, 'every 201 names the same user');
  assert.equal(await countNamed(targets[0]!, name), 1, 'exactly one write');
  const retry = await createKeyed(targets[0]!, key, userNamed(name));
  assert.equal(retry.status, 201);
  assert.equal(retry.headers.get('idempotent-replayed'), 'true');
  assert.equal((retry.body as { ID: number }).ID, [...ids][0]);
}

/**
 * A replay shows the user as it is now (changed: the new fields and ETag); once the user is
 * deleted, or a replace import swapped the table (ids restart, the same id may be somebody
 * else), the replay is 410 and writes nothing.
 */
export async function drillReplayFollowsTheUser(target: WriteTarget): Promise<void> {
  const name = `Followed ${Date.now()}`;
  const key = newKey('follow');
  const first = await createKeyed(target, key, userNamed(name));
  assert.equal(first.status, 201);
  const id = (first.body as { ID: number }).ID;
  const patched = await send(target, 'PATCH', `/api/users/${id}`, {
    body: { CITY: 'Buffalo' },
    type: 'application/merge-patch+json',
    headers: { 'if-match': first.headers.get('etag')! },
  });
  assert.equal(patched.status, 200);
  const replay = await createKeyed(target, key, userNamed(name));
  assert.equal(replay.status, 201);
  assert.deepEqual(replay.body, { ID: id, ...userNamed(name), CITY: 'Buffalo' });
  assert.equal(replay.headers.get('etag'), patched.headers.get('etag'));

  const deleted = await send(target, 'DELETE', `/api/users/${id}`, {
    headers: { 'if-match': '*' },
  });
  assert.equal(deleted.status, 204);
  const gone = await createKeyed(target, key, userNamed(name));
  assert.equal(gone.status, 410, JSON.stringify(gone.body));
  assert.equal(codeOf(gone), 'ERR_IDEMPOTENCY_OUTCOME_GONE');
  assert.equal(await countNamed(target, name), 0, 'a gone replay writes nothing');

  // A replace: the key's user id exists again in the new table, as somebody else.
  const rows = Array.from(
    { length: id + 1 },
    (_, index) => `Replacement ${index},1 Main St,Albany,NY,01/01/01`,
  );
  const replaceKey = newKey('before-replace');
  const before = await createKeyed(target, replaceKey, userNamed(`${name} 2`));
  assert.equal(before.status, 201);
  const replaced = await send(target, 'POST', '/addtosql?mode=replace', {
    body: `NAME,STREET,CITY,STATE,USER_DATE\n${rows.join('\n')}\n`,
    type: 'text/csv',
  });
  assert.equal(replaced.status, 200, JSON.stringify(replaced.body));
  const afterReplace = await createKeyed(target, replaceKey, userNamed(`${name} 2`));
  assert.equal(afterReplace.status, 410, JSON.stringify(afterReplace.body));
  assert.equal(await countNamed(target, `${name} 2`), 0);
}
