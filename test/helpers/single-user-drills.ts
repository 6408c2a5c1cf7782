import assert from 'node:assert/strict';

/** A running instance (over real HTTP) with its admin token. */
export interface WriteTarget {
  url: string;
  token: string;
}

export interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
}

type ApiUser = Record<string, string | number>;

const USER = {
  NAME: 'Ada Lovelace',
  STREET: '12 Analytical Row',
  CITY: 'London',
  STATE: 'NY',
  USER_DATE: '10/12/15',
};

/** One request; JSON or problem+json bodies parsed, anything else as text. */
export async function send(
  target: WriteTarget,
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: unknown; type?: string; auth?: boolean } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { ...options.headers };
  if (options.auth !== false) headers.authorization = `Bearer ${target.token}`;
  let body: string | undefined;
  if (options.body !== undefined) {
    body = typeof options.body === 'string' ? options.body : JSON.stringify(options.body);
    headers['content-type'] = options.type ?? 'application/json';
  }
  const response = await fetch(`${target.url}${path}`, { method, headers, body });
  const text = await response.text();
  let parsed: unknown = text;
  if (/json/.test(response.headers.get('content-type') ?? '') && text !== '') {
    parsed = JSON.parse(text);
  }
  return { status: response.status, headers: response.headers, body: parsed };
}

/** Creates a user; returns its id and ETag. */
export async function createUser(
  target: WriteTarget,
  user: Record<string, string> = USER,
): Promise<{ id: number; etag: string }> {
  const created = await send(target, 'POST', '/api/users', { body: user });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const id = (created.body as ApiUser).ID as number;
  return { id, etag: created.headers.get('etag')! };
}

function problemCode(answer: Answer): unknown {
  return (answer.body as { code?: unknown }).code;
}

/**
 * The whole life of one user through the API: create, read with ETag and 304, merge patch,
 * replace, delete; each precondition (428, 412, `*`), and the bare /api showing each change at
 * once on the instance that wrote it.
 */
export async function drillUserLifecycle(target: WriteTarget): Promise<void> {
  const { id, etag } = await createUser(target);
  const read = await send(target, 'GET', `/api/users/${id}`, { auth: false });
  assert.equal(read.status, 200);
  assert.deepEqual(read.body, { ID: id, ...USER });
  assert.equal(read.headers.get('etag'), etag);
  assert.match(etag, /^"u\d+-g\d+-r\d+"$/);
  const revalidated = await send(target, 'GET', `/api/users/${id}`, {
    auth: false,
    headers: { 'if-none-match': `"other", ${etag}` },
  });
  assert.equal(revalidated.status, 304);
  const bare = async () => (await send(target, 'GET', '/api', { auth: false })).body as ApiUser[];
  assert.deepEqual((await bare()).at(-1), USER, 'the instance that wrote serves it at once');

  const withoutIfMatch = await send(target, 'PATCH', `/api/users/${id}`, {
    body: { CITY: 'Paris' },
    type: 'application/merge-patch+json',
  });
  assert.equal(withoutIfMatch.status, 428);
  assert.equal(problemCode(withoutIfMatch), 'ERR_HTTP_PRECONDITION_REQUIRED');

  const patched = await send(target, 'PATCH', `/api/users/${id}`, {
    body: { CITY: 'Paris', STATE: 'ca' },
    type: 'application/merge-patch+json',
    headers: { 'if-match': etag },
  });
  assert.equal(patched.status, 200, JSON.stringify(patched.body));
  assert.deepEqual(patched.body, { ID: id, ...USER, CITY: 'Paris', STATE: 'CA' });
  const patchedEtag = patched.headers.get('etag')!;
  assert.notEqual(patchedEtag, etag);
  assert.deepEqual((await bare()).at(-1), { ...USER, CITY: 'Paris', STATE: 'CA' });

  const stale = await send(target, 'PUT', `/api/users/${id}`, {
    body: USER,
    headers: { 'if-match': etag },
  });
  assert.equal(stale.status, 412);
  assert.equal(problemCode(stale), 'ERR_HTTP_PRECONDITION_FAILED');
  const weak = await send(target, 'PUT', `/api/users/${id}`, {
    body: USER,
    headers: { 'if-match': `W/${patchedEtag}` },
  });
  assert.equal(weak.status, 412, 'If-Match compares strongly');
  assert.equal(
    (await send(target, 'GET', `/api/users/${id}`, { auth: false })).headers.get('etag'),
    patchedEtag,
    'a refused write changes nothing',
  );

  const replaced = await send(target, 'PUT', `/api/users/${id}`, {
    body: { ID: id, ...USER, NAME: 'Grace Hopper' },
    headers: { 'if-match': '*' },
  });
  assert.equal(replaced.status, 200, JSON.stringify(replaced.body));
  assert.deepEqual(replaced.body, { ID: id, ...USER, NAME: 'Grace Hopper' });

  const deleted = await send(target, 'DELETE', `/api/users/${id}`, {
    headers: { 'if-match': replaced.headers.get('etag')! },
  });
  assert.equal(deleted.status, 204);
  assert.equal((await send(target, 'GET', `/api/users/${id}`, { auth: false })).status, 404);
  assert.notDeepEqual((await bare()).at(-1), { ...USER, NAME: 'Grace Hopper' });
  const again = await send(target, 'DELETE', `/api/users/${id}`, { headers: { 'if-match': '*' } });
  assert.equal(again.status, 404);
}

/** Every bad request is refused with its own status and problem, and changes nothing. */
export async function drillBadWrites(target: WriteTarget): Promise<void> {
  const { id, etag } = await createUser(target);
  const before = await send(target, 'GET', '/api', { auth: false });
  const patch = (body: unknown, type = 'application/merge-patch+json') =>
    send(target, 'PATCH', `/api/users/${id}`, { body, type, headers: { 'if-match': etag } });
  const cases: [string, Promise<Answer>, number, string, RegExp?][] = [
    [
      'no token',
      send(target, 'POST', '/api/users', { body: USER, auth: false }),
      401,
      'ERR_AUTH_REQUIRED',
    ],
    [
      'missing fields',
      send(target, 'POST', '/api/users', { body: { NAME: 'x' } }),
      422,
      'ERR_USER_INVALID',
      /STREET: required.*CITY: required.*STATE: required.*USER_DATE: required/,
    ],
    [
      'bad values',
      send(target, 'POST', '/api/users', {
        body: { ...USER, STATE: 'ZZ', USER_DATE: '31/02/20', NAME: 7 },
      }),
      422,
      'ERR_USER_INVALID',
      /NAME: must be a string/,
    ],
    [
      'an id of its own',
      send(target, 'POST', '/api/users', { body: { ID: 5, ...USER } }),
      422,
      'ERR_USER_INVALID',
      /ID/,
    ],
    [
      'not JSON',
      send(target, 'POST', '/api/users', { body: '{"NAME":' }),
      400,
      'ERR_HTTP_BAD_REQUEST',
    ],
    ['an array', send(target, 'POST', '/api/users', { body: [USER] }), 422, 'ERR_USER_INVALID'],
    [
      'CSV',
      send(target, 'POST', '/api/users', { body: 'NAME\nx\n', type: 'text/csv' }),
      415,
      'ERR_HTTP_UNSUPPORTED_MEDIA_TYPE',
    ],
    [
      'null on a required field',
      patch({ CITY: null }),
      422,
      'ERR_USER_INVALID',
      /CITY: cannot be removed/,
    ],
    [
      'an unknown field',
      patch({ EMAIL: 'a@b.c' }),
      422,
      'ERR_USER_INVALID',
      /"EMAIL": not a user field/,
    ],
    [
      'a merge patch sent as JSON',
      patch({ CITY: 'Rome' }, 'application/json'),
      415,
      'ERR_HTTP_UNSUPPORTED_MEDIA_TYPE',
    ],
    ['a bad date', patch({ USER_DATE: '2020-01-01' }), 422, 'ERR_USER_INVALID', /USER_DATE/],
    [
      'an unknown id',
      send(target, 'PATCH', '/api/users/999999999', {
        body: { CITY: 'Rome' },
        type: 'application/merge-patch+json',
        headers: { 'if-match': '*' },
      }),
      404,
      'ERR_USER_NOT_FOUND',
    ],
    [
      'a method the resource has not',
      send(target, 'POST', `/api/users/${id}`, { body: USER }),
      405,
      'ERR_HTTP_METHOD_NOT_ALLOWED',
    ],
    [
      'a body far too large',
      send(target, 'POST', '/api/users', { body: { ...USER, NAME: 'x'.repeat(40_000) } }),
      413,
      'ERR_UPLOAD_TOO_LARGE',
    ],
  ];
  for (const [what, answer, status, code, detail] of cases) {
    const { status: got, body, headers } = await answer;
    assert.equal(got, status, `${what}: ${JSON.stringify(body)}`);
    assert.match(headers.get('content-type') ?? '', /application\/problem\+json/, what);
    assert.equal((body as { code: string }).code, code, what);
    if (detail) assert.match((body as { detail: string }).detail, detail, what);
  }
  const after = await send(target, 'GET', '/api', { auth: false });
  assert.equal(after.headers.get('etag'), before.headers.get('etag'), 'nothing changed');
  assert.equal((await send(target, 'GET', `/api/users/${id}`)).headers.get('etag'), etag);
}

/**
 * A replace import restarts ids at 1: an ETag from the old table never matches the new user
 * that has the same id.
 */
export async function drillEtagsOutliveNoReplace(target: WriteTarget): Promise<void> {
  const csv = 'NAME,STREET,CITY,STATE,USER_DATE\nFirst One,1 Main St,Albany,NY,01/01/01\n';
  const load = () =>
    send(target, 'POST', '/addtosql?mode=replace', { body: csv, type: 'text/csv' });
  assert.equal((await load()).status, 200);
  const old = await send(target, 'GET', '/api/users/1', { auth: false });
  assert.equal(old.status, 200);
  const oldEtag = old.headers.get('etag')!;
  assert.equal((await load()).status, 200, 'the same row again, in a new table');
  const fresh = await send(target, 'GET', '/api/users/1', {
    auth: false,
    headers: { 'if-none-match': oldEtag },
  });
  assert.equal(fresh.status, 200, 'an ETag of the old table is not current');
  assert.notEqual(fresh.headers.get('etag'), oldEtag);
  const stale = await send(target, 'DELETE', '/api/users/1', { headers: { 'if-match': oldEtag } });
  assert.equal(stale.status, 412);
}

/**
 * Random single-user writes (creates, merge patches, replaces, deletes), then the bare /api of
 * `writer` (built page by page from its changes) must be byte-identical to what `fresh` (a
 * cache that never saw them) builds from scratch.
 */
export async function drillRandomWritesMatchAFullBuild(
  writer: WriteTarget,
  fresh: () => Promise<Buffer>,
  writes: number,
  seed = 7,
): Promise<void> {
  let state = seed;
  const random = (n: number) => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    return state % n;
  };
  const ids: number[] = [];
  for (let index = 0; index < writes; index += 1) {
    const choice = ids.length === 0 ? 0 : random(4);
    if (choice === 0) {
      ids.push((await createUser(writer, { ...USER, NAME: `Random ${index}` })).id);
      continue;
    }
    const at = random(ids.length);
    const id = ids[at]!;
    const headers = { 'if-match': '*' };
    const answer =
      choice === 1
        ? await send(writer, 'PATCH', `/api/users/${id}`, {
            body: { CITY: `City ${index}` },
            type: 'application/merge-patch+json',
            headers,
          })
        : choice === 2
          ? await send(writer, 'PUT', `/api/users/${id}`, {
              body: { ...USER, STREET: `${index} Random Rd` },
              headers,
            })
          : await send(writer, 'DELETE', `/api/users/${id}`, { headers });
    assert.ok(answer.status === 200 || answer.status === 204, JSON.stringify(answer.body));
    if (choice === 3) ids.splice(at, 1);
    // Read between some writes, so page builds happen on top of earlier incremental ones.
    if (random(3) === 0) await send(writer, 'GET', '/api', { auth: false });
  }
  const served = Buffer.from(
    await (
      await fetch(`${writer.url}/api`, { headers: { 'accept-encoding': 'identity' } })
    ).arrayBuffer(),
  );
  assert.ok(served.equals(await fresh()), 'the incrementally built body equals a full build');
}

/**
 * Two instances change the same user at once from the same ETag: one wins, the other gets 412,
 * and the user holds the winner's change. Several rounds, so the requests really overlap.
 */
export async function drillConcurrentWritersOneWins(
  a: WriteTarget,
  b: WriteTarget,
  rounds = 5,
): Promise<void> {
  const { id } = await createUser(a);
  for (let round = 0; round < rounds; round += 1) {
    const { headers } = await send(b, 'GET', `/api/users/${id}`, { auth: false });
    const etag = headers.get('etag')!;
    const change = (target: WriteTarget, city: string) =>
      send(target, 'PATCH', `/api/users/${id}`, {
        body: { CITY: city },
        type: 'application/merge-patch+json',
        headers: { 'if-match': etag },
      });
    const answers = await Promise.all([change(a, `A${round}`), change(b, `B${round}`)]);
    const statuses = answers.map((answer) => answer.status).sort();
    assert.deepEqual(
      statuses,
      [200, 412],
      `round ${round}: ${JSON.stringify(answers.map((x) => x.body))}`,
    );
    const winner = answers.find((answer) => answer.status === 200)!;
    const now = await send(a, 'GET', `/api/users/${id}`, { auth: false });
    assert.deepEqual(now.body, winner.body);
    assert.equal(now.headers.get('etag'), winner.headers.get('etag'));
  }
}
