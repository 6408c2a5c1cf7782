import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { copyFile, mkdir, mkdtemp, readdir, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { startBuiltServer, startChildServer } from '../helpers/child-server.js';
import { REPO_ROOT } from '../helpers/paths.js';

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'users-api-proc-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const baseEnv = (extra: Record<string, string>) => ({
  PATH: process.env.PATH,
  PORT: '0',
  HOST: '127.0.0.1',
  ...extra,
});

const ADMIN_TOKEN = 'test-admin-token-0123456789';

/** An admin CSV upload to /addtosql?mode=append whose body is still open: the caller ends it. */
function openUpload(url: string) {
  const req = request(`${url}/addtosql?mode=append`, {
    method: 'POST',
    headers: { 'content-type': 'text/csv', authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  req.write('NAME,STREET,CITY,STATE,USER_DATE\n');
  return req;
}

describe('the server process', () => {
  it('`npm start` serves the bundled users on a fresh database and stops cleanly on SIGTERM', async (t) => {
    const dir = await tempDir(t);
    const server = await startChildServer(t, 'npm', ['start', '--silent'], {
      cwd: REPO_ROOT,
      env: baseEnv({ DATABASE_URL: `sqlite:${join(dir, 'users.db')}`, SERVER_NAME: 'webserver1' }),
      detached: true,
    });
    const response = await fetch(`${server.url}/api`);
    assert.equal(response.status, 200);
    const users = (await response.json()) as { NAME: string }[];
    assert.equal(users.length, 1000);
    assert.equal(users[0]!.NAME, 'Duane Adams');
    assert.equal(
      await (await fetch(`${server.url}/healthcheck`)).text(),
      'all good from webserver1',
    );
    await fetch(`${server.url}/api?token=secret-in-query`, {
      headers: { authorization: 'Bearer secret-in-header', 'x-request-id': 'trace-1' },
    });
    // One JSON line per request, with its id, route template, status and server; no secrets.
    // The line is written after the response is sent: wait for it (bounded).
    const isRequestLine = (text: string) =>
      text.includes('"reqId":"trace-1"') && text.includes('"msg":"request"');
    for (let tries = 0; tries < 50 && !server.lines.some(isRequestLine); tries += 1) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const line = server.lines.find(isRequestLine);
    assert.ok(line, server.lines.join('\n'));
    assert.equal((line.match(/"server":/g) ?? []).length, 1, line);
    assert.doesNotMatch(line, /secret-in/);
    const entry = JSON.parse(line) as Record<string, unknown>;
    assert.deepEqual(
      [entry.msg, entry.method, entry.route, entry.status, entry.server],
      ['request', 'GET', '/api', 400, 'webserver1'],
    );
    assert.equal(typeof entry.durationMs, 'number');
    // npm re-raises the signal its child got, so the server's own clean exit shows in its log.
    await server.stop();
    assert.ok(
      server.lines.some((line) => line.includes('"msg":"stopped"')),
      server.lines.join('\n'),
    );
  });

  it('creates ./data/users.db under its working folder by default', async (t) => {
    const dir = await tempDir(t);
    await mkdir(join(dir, 'data'));
    await copyFile(join(REPO_ROOT, 'data/users.csv'), join(dir, 'data/users.csv'));
    const server = await startBuiltServer(t, dir, {});
    assert.ok((await stat(join(dir, 'data/users.db'))).isFile());
    const users = (await (await fetch(`${server.url}/api`)).json()) as unknown[];
    assert.equal(users.length, 1000);
    assert.equal(await server.stop(), 0);
  });

  it('creates a missing database file and its folders for serve, unlike the other commands', async (t) => {
    const dir = await tempDir(t);
    const path = join(dir, 'new', 'folder', 'users.db');
    const server = await startBuiltServer(t, dir, {
      DATABASE_URL: `sqlite:${path}`,
      DATA_FILE: join(REPO_ROOT, 'data/users.csv'),
    });
    assert.ok((await stat(path)).isFile());
    assert.equal((await fetch(`${server.url}/api/count`)).status, 200);
    assert.equal(await server.stop(), 0);
  });

  it('finishes an in-flight request on SIGINT after a drain of 0, and exits 0', async (t) => {
    const dir = await tempDir(t);
    const server = await startBuiltServer(t, dir, {
      DATABASE_URL: `sqlite:${join(dir, 'users.db')}`,
      DATA_FILE: join(REPO_ROOT, 'data/users.csv'),
      ADMIN_TOKEN,
      // No drain: the server closes at once, so it is the close that must wait for the upload.
      SHUTDOWN_DRAIN_MS: '0',
    });
    // An upload whose body is still arriving when SIGINT lands: it must still be answered.
    let exited: Promise<number | null> | undefined;
    const answered = new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = openUpload(server.url);
      req.on('response', (res) => {
        let body = '';
        res.on('data', (chunk: Buffer) => (body += chunk.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      setTimeout(() => {
        exited = server.stop('SIGINT');
        setTimeout(() => req.end('Late Arrival,Hojzi Path,Zurmubku,NY,08/08/43\n'), 300);
      }, 200);
    });
    assert.deepEqual(await answered, { status: 200, body: '{"status":"imported","rows":1}' });
    assert.equal(await exited, 0);
  });

  it('cuts a request that outlives SHUTDOWN_TIMEOUT_MS and still exits 0', async (t) => {
    const dir = await tempDir(t);
    const server = await startBuiltServer(t, dir, {
      DATABASE_URL: `sqlite:${join(dir, 'users.db')}`,
      IMPORT_ON_START: 'never',
      ADMIN_TOKEN,
      SHUTDOWN_DRAIN_MS: '200',
      SHUTDOWN_TIMEOUT_MS: '1500',
    });
    // An upload whose body never ends: without the timeout the shutdown would wait for ever.
    const cut = new Promise<string>((resolve) => {
      const req = openUpload(server.url);
      req.on('response', () => resolve('answered'));
      req.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
    });
    // Until the upload is in the server's hands: in flight beside this scrape itself.
    const inFlight = async () =>
      /^http_requests_in_flight (\d+)$/m.exec(
        await (await fetch(`${server.url}/metrics`)).text(),
      )?.[1];
    for (let tries = 0; tries < 100 && Number(await inFlight()) < 2; tries += 1)
      await new Promise((resolve) => setTimeout(resolve, 50));
    const stillRunning = new Promise((resolve) => {
      setTimeout(resolve, 15_000, 'still running').unref();
    });
    assert.equal(await Promise.race([server.stop(), stillRunning]), 0);
    assert.equal(await cut, 'ECONNRESET');
    assert.ok(
      server.lines.some((line) => line.includes('shutdown timeout: cutting the requests')),
      server.lines.join('\n'),
    );
  });

  it('answers an oversized streamed upload with 413 over a real socket', async (t) => {
    const dir = await tempDir(t);
    const server = await startBuiltServer(t, dir, {
      DATABASE_URL: `sqlite:${join(dir, 'users.db')}`,
      IMPORT_ON_START: 'never',
      MAX_UPLOAD_BYTES: '65536',
    });
    // curl, as an operator would: it reads the early 413 even though the server stops reading.
    // (Node's own http client drops a response that arrives while it is still writing.)
    const body = join(dir, 'big.csv');
    await writeFile(
      body,
      'NAME,STREET,CITY,STATE,USER_DATE\n' +
        'Duane Adams,Hojzi Path,Zurmubku,NY,08/08/43\n'.repeat(25_000),
    );
    const { stdout } = await promisify(execFile)('curl', [
      '-sS',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      '--max-time',
      '20',
      '-X',
      'POST',
      '-H',
      'content-type: text/csv',
      '-H',
      'transfer-encoding: chunked',
      '--data-binary',
      `@${body}`,
      `${server.url}/addtosql`,
    ]);
    const status = Number(stdout);
    assert.equal(status, 413);
    const count = (await (await fetch(`${server.url}/api`)).json()) as unknown[];
    assert.equal(count.length, 0);
  });

  it('leaves exactly one copy when two instances on one database get 20 simultaneous /addtosql', async (t) => {
    const dir = await tempDir(t);
    const env = {
      DATABASE_URL: `sqlite:${join(dir, 'users.db')}`,
      DATA_FILE: join(REPO_ROOT, 'data/users.csv'),
      IMPORT_ON_START: 'never',
    };
    const first = await startBuiltServer(t, dir, env);
    const second = await startBuiltServer(t, dir, env);
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, index) =>
        fetch(`${(index % 2 === 0 ? first : second).url}/addtosql`, { method: 'POST' }).then(
          async (response) => ({
            status: response.status,
            body: (await response.json()) as { status: string },
          }),
        ),
      ),
    );
    assert.deepEqual(
      responses.map((r) => r.status),
      Array<number>(20).fill(200),
    );
    assert.deepEqual(responses.map((r) => r.body.status).sort(), [
      'imported',
      ...Array<string>(19).fill('skipped'),
    ]);
    for (const server of [first, second]) {
      const users = (await (await fetch(`${server.url}/api`)).json()) as unknown[];
      assert.equal(users.length, 1000);
    }
  });

  it('removes the upload spool folders of dead processes at start, never a live one', async (t) => {
    const dir = await tempDir(t);
    const temp = join(dir, 'tmp');
    await mkdir(temp);
    const env = (name: string) => ({
      DATABASE_URL: `sqlite:${join(dir, `${name}.db`)}`,
      IMPORT_ON_START: 'never',
      ADMIN_TOKEN,
      TMPDIR: temp,
    });
    // A live instance with an upload in progress: its spool folder must survive the next start.
    const live = await startBuiltServer(t, dir, env('live'));
    const upload = openUpload(live.url);
    const answered = once(upload, 'response');
    const spoolOf = (pid: number | undefined) => `users-api-upload-${pid}@${hostname()}-`;
    let liveSpool: string | undefined;
    for (let tries = 0; tries < 100 && liveSpool === undefined; tries += 1) {
      liveSpool = (await readdir(temp)).find((name) => name.startsWith('users-api-upload-'));
      if (liveSpool === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(liveSpool !== undefined, `no spool folder of the live server in ${temp}`);

    const exited = spawn(process.execPath, ['-e', '']);
    await once(exited, 'exit');
    const twoDaysAgo = new Date(Date.now() - 2 * 24 * 3600 * 1000);
    const plant = async (name: string, modified?: Date) => {
      await mkdir(join(temp, name));
      await writeFile(join(temp, name, 'upload'), 'NAME,STREET,CITY,STATE,USER_DATE\n');
      if (modified === undefined) return;
      await utimes(join(temp, name, 'upload'), modified, modified);
      await utimes(join(temp, name), modified, modified);
    };
    const stale = [`${spoolOf(exited.pid)}a1B2c3`, 'users-api-upload-Old123'];
    await plant(stale[0]!);
    await plant(stale[1]!, twoDaysAgo);
    const kept = [
      'users-api-upload-New123',
      `users-api-upload-${exited.pid}@another-host-d4E5f6`,
      'something-else',
    ];
    for (const name of kept) await plant(name);

    const next = await startBuiltServer(t, dir, env('next'));
    assert.deepEqual((await readdir(temp)).sort(), [...kept, liveSpool].sort());
    upload.end('Late Arrival,Hojzi Path,Zurmubku,NY,08/08/43\n');
    const [response] = (await answered) as [{ statusCode: number }];
    assert.equal(response.statusCode, 200);
    assert.deepEqual((await readdir(temp)).sort(), [...kept].sort());
    assert.equal(await next.stop(), 0);
  });

  it('refuses to start on a bad configuration value, naming it (exit 1)', async (t) => {
    const dir = await tempDir(t);
    await assert.rejects(
      startBuiltServer(t, dir, { PORT: 'eighty' }),
      /server exited with 1 before listening: users-api: configuration error: PORT="eighty" is invalid/,
    );
  });
});
