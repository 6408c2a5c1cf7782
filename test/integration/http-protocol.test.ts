import assert from 'node:assert/strict';
import { connect, type AddressInfo } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { createTestApp } from '../helpers/test-app.js';

const PROBLEM_JSON = 'application/problem+json; charset=utf-8';

/** The real app listening on a free loopback port. */
async function listeningApp(t: TestContext): Promise<{ port: number }> {
  const { app } = await createTestApp(t);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.server.address();
  assert.ok(address !== null && typeof address === 'object');
  return { port: address.port };
}

interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The server closed the connection (within the bound). */
  closed: boolean;
}

/**
 * Writes `bytes` on a fresh TCP connection and reads until the server closes it (at most a few
 * seconds: an answer that never comes fails the test, it does not hang it).
 */
async function sendRaw(port: number, bytes: string | Buffer): Promise<RawAnswer> {
  const socket = connect({ port, host: '127.0.0.1' });
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  // The server may close while the rest of a large request is still being written.
  socket.on('error', () => undefined);
  socket.write(bytes);
  const closed = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 5000);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  socket.destroy();
  return { ...parseAnswer(Buffer.concat(chunks).toString('latin1')), closed };
}

/** Status, headers and body of one raw HTTP/1.1 response. */
function parseAnswer(text: string): Omit<RawAnswer, 'closed'> {
  const [head = '', ...rest] = text.split('\r\n\r\n');
  const [statusLine = '', ...headerLines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1]), headers, body: rest.join('\r\n\r\n') };
}

function assertProblem(answer: RawAnswer, status: number, code: string) {
  assert.equal(answer.status, status, JSON.stringify(answer));
  assert.equal(answer.headers['content-type'], PROBLEM_JSON);
  assert.match(answer.headers['x-request-id'] ?? '', /^[0-9a-f]{12}-[0-9a-z]+$/);
  assert.equal(answer.headers.connection, 'close');
  assert.equal(Number(answer.headers['content-length']), Buffer.byteLength(answer.body));
  const problem = JSON.parse(answer.body) as Record<string, unknown>;
  assert.equal(problem.status, status);
  assert.equal(problem.code, code);
  assert.equal(problem.type, `urn:users-api:problem:${code}`);
  assert.equal(typeof problem.title, 'string');
  assert.equal(typeof problem.detail, 'string');
  assert.ok(answer.closed, 'the server closes the connection');
}

describe('requests node:http refuses before the app sees them', () => {
  it('headers over the size limit: 431 problem+json with a request id, connection closed', async (t) => {
    const { port } = await listeningApp(t);
    const answer = await sendRaw(
      port,
      `GET /api HTTP/1.1\r\nHost: x\r\nX-Padding: ${'a'.repeat(70 * 1024)}\r\n\r\n`,
    );
    assertProblem(answer, 431, 'ERR_HTTP_HEADERS_TOO_LARGE');
  });

  it('a URL over the size limit: 414 problem+json with a request id', async (t) => {
    const { port } = await listeningApp(t);
    const answer = await sendRaw(
      port,
      `GET /api?q=${'a'.repeat(70 * 1024)} HTTP/1.1\r\nHost: x\r\n\r\n`,
    );
    assertProblem(answer, 414, 'ERR_HTTP_URI_TOO_LONG');
  });

  it('a request line that is not HTTP: 400 problem+json with a request id', async (t) => {
    const { port } = await listeningApp(t);
    for (const garbage of [
      '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n',
      'HELLO\r\n\r\n',
      'GET / HTTP/9.Z\r\n\r\n',
    ]) {
      assertProblem(await sendRaw(port, garbage), 400, 'ERR_HTTP_BAD_REQUEST');
    }
  });
});

describe('methods a route does not serve', () => {
  const routes: [url: string, allow: string][] = [
    ['/api', 'GET, HEAD'],
    ['/api/count', 'GET, HEAD'],
    ['/api/users', 'POST'],
    ['/api/users/1', 'GET, PUT, PATCH, DELETE, HEAD'],
    ['/healthcheck', 'GET, HEAD'],
    ['/addtosql', 'POST'],
    ['/admin/backups', 'GET, POST, HEAD'],
    ['/admin/backups/users-20200101T000000.000Z.ndjson.gz/restore', 'POST'],
  ];
  for (const [url, allow] of routes) {
    it(`${url}: OPTIONS, TRACE and others get 405 with Allow: ${allow}`, async (t) => {
      const { app } = await createTestApp(t);
      for (const method of ['OPTIONS', 'TRACE', 'PURGE', 'PROPFIND', 'QUERY'] as const) {
        const response = await app.inject({
          method,
          url,
          headers: { 'x-secret': 'never-echoed', authorization: 'Bearer never-echoed-either' },
        });
        assert.equal(response.statusCode, 405, `${method} ${url}: ${response.body}`);
        assert.equal(response.headers.allow, allow);
        assert.equal(response.headers['content-type'], PROBLEM_JSON);
        assert.equal(response.json<{ code: string }>().code, 'ERR_HTTP_METHOD_NOT_ALLOWED');
        assert.doesNotMatch(response.body, /never-echoed/);
      }
    });
  }

  it('a PUT with a body that does not parse is still a 405, not a 400', async (t) => {
    const { app } = await createTestApp(t);
    const response = await app.inject({
      method: 'PUT',
      url: '/api',
      headers: { 'content-type': 'application/json' },
      payload: '{"oops',
    });
    assert.equal(response.statusCode, 405, response.body);
    assert.equal(response.headers.allow, 'GET, HEAD');
  });

  it('TRACE through a real socket is refused and echoes nothing', async (t) => {
    const { port } = await listeningApp(t);
    const answer = await sendRaw(
      port,
      'TRACE /api HTTP/1.1\r\nHost: x\r\nCookie: session=never-echoed\r\nConnection: close\r\n\r\n',
    );
    assert.equal(answer.status, 405);
    assert.equal(answer.headers.allow, 'GET, HEAD');
    assert.doesNotMatch(answer.body, /never-echoed/);
  });
});

describe('control characters in query values', () => {
  const values = ['%00', 'a%00b', '%01', 'ab%09', '%0A', '%1B[31m', '%1F', '%7F'];
  const parameters: [path: string, name: string][] = [
    ['/api', 'q'],
    ['/api', 'city'],
    ['/api', 'name'],
    ['/api', 'state'],
    ['/api', 'cursor'],
    ['/api', 'fields'],
    ['/api', 'sort'],
    ['/api', 'limit'],
    ['/api/count', 'q'],
    ['/api/count', 'city'],
    ['/api/count', 'name'],
    ['/api/count', 'state'],
  ];
  for (const [path, name] of parameters) {
    it(`${path}?${name}= with a control character is a 400 naming ${name}`, async (t) => {
      const { app } = await createTestApp(t);
      await app.inject({ method: 'POST', url: '/addtosql' });
      for (const value of values) {
        const response = await app.inject({ method: 'GET', url: `${path}?${name}=${value}` });
        assert.equal(response.statusCode, 400, `${name}=${value}: ${response.body}`);
        assert.equal(response.headers['content-type'], PROBLEM_JSON);
        const problem = response.json<{ code: string; detail: string }>();
        assert.equal(problem.code, 'ERR_HTTP_BAD_REQUEST');
        assert.match(problem.detail, new RegExp(`"${name}"`));
      }
    });
  }

  it('q=%00 used to match every row on SQLite: now a 400 that says why', async (t) => {
    const { app } = await createTestApp(t);
    await app.inject({ method: 'POST', url: '/addtosql' });
    const response = await app.inject({ method: 'GET', url: '/api/count?q=%00' });
    assert.equal(response.statusCode, 400, response.body);
    assert.equal(
      response.json<{ detail: string }>().detail,
      'query parameter "q" must not contain control characters (U+0000 to U+001F, U+007F)',
    );
    // Printable text, spaces and non-ASCII letters are still searched.
    const plain = await app.inject({ method: 'GET', url: '/api/count?q=Duane%20Adams' });
    assert.ok(plain.json<{ count: number }>().count > 0, plain.body);
    const unicode = await app.inject({ method: 'GET', url: '/api/count?city=Z%C3%BCrich' });
    assert.deepEqual(unicode.json(), { count: 0 });
  });
});

describe('an instance that is closing', () => {
  it('a request that reaches it while it closes gets a 503 problem a balancer can retry', async (t) => {
    const { app } = await createTestApp(t);
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    const socket = connect({ port, host: '127.0.0.1' });
    t.after(() => socket.destroy());
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    const waitFor = async (what: string, done: () => boolean) => {
      for (let i = 0; i < 500 && !done(); i++) await new Promise((r) => setTimeout(r, 10));
      assert.ok(done(), `${what} within 5 s`);
    };

    // An upload under way keeps this connection busy, so closing the server does not end it.
    const csv =
      'NAME,STREET,CITY,STATE,USER_DATE\r\nDuane Adams,Hojzi Path,Zurmubku,NY,08/08/43\r\n';
    socket.write(
      'POST /addtosql?mode=append HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n' +
        `Content-Length: ${csv.length}\r\nExpect: 100-continue\r\n\r\n`,
    );
    await waitFor('100 Continue', () => received.includes('100 Continue'));
    const closed = app.close();
    await waitFor('the server to stop listening', () => !app.server.listening);
    // The upload's end, then a second request on the same connection: it arrives after the
    // close began, as a request from a balancer's reused connection does.
    socket.write(`${csv}GET /api/count HTTP/1.1\r\nHost: x\r\n\r\n`);
    await Promise.race([ended, new Promise((r) => setTimeout(r, 5000).unref())]);
    await closed;

    const answers = received.split(/(?=HTTP\/1\.1 )/).map(parseAnswer);
    assert.deepEqual(
      answers.map((answer) => answer.status),
      [100, 200, 503],
      received,
    );
    const late = answers[2]!;
    assert.equal(late.headers['content-type'], PROBLEM_JSON);
    assert.match(late.headers['x-request-id'] ?? '', /^[0-9a-f]{12}-[0-9a-z]+$/);
    assert.equal(late.headers.connection, 'close');
    const problem = JSON.parse(late.body) as Record<string, unknown>;
    assert.equal(problem.code, 'ERR_SHUTTING_DOWN');
    assert.equal(problem.status, 503);
  });
});
