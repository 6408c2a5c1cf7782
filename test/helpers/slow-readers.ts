import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { generateUsers } from '../../scripts/generate-users-lib.js';
import type { Database } from '../../src/db/database.js';
import { importUsers } from '../../src/importer/import-users.js';
import { eventually } from './mariadb.js';

/** Replaces every user with `rows` generated ones (the bundled sample's first rows first). */
export async function loadGeneratedUsers(db: Database, rows: number): Promise<void> {
  const result = await importUsers(
    db,
    {
      format: 'csv',
      open: () => Readable.from(generateUsers(rows), { objectMode: false }),
    },
    'replace',
  );
  assert.equal(result.rows, rows);
}

/** A client that sent one GET, took the first bytes of the answer, and stopped reading. */
export interface StalledReader {
  /** The status code, or 0 when no answer came within the wait. */
  status: number;
  /** The response head (status line and headers), lower case. */
  head: string;
  /** The bytes taken so far (only the first chunk until `resume`). */
  received(): string;
  /** Reads on; resolves with everything received once the connection is closed. */
  resume(): Promise<string>;
  destroy(): void;
}

/**
 * Sends `GET path` on a connection of its own and stops reading after the first chunk: once the
 * socket buffers are full, the server cannot send more and its stream waits on this client.
 */
export function openStalledReader(
  url: string,
  path: string,
  waitMs = 5000,
): Promise<StalledReader> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket: Socket = connect({ host: hostname, port: Number(port) });
    let text = '';
    const closed = new Promise<void>((done) => socket.once('close', () => done()));
    const reader = (status: number, head: string): StalledReader => ({
      status,
      head,
      received: () => text,
      async resume() {
        socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
        socket.resume();
        await closed;
        return text;
      },
      destroy: () => socket.destroy(),
    });
    const timer = setTimeout(() => {
      socket.pause();
      resolve(reader(0, ''));
    }, waitMs);
    socket.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.once('data', (chunk: Buffer) => {
      clearTimeout(timer);
      socket.pause();
      text = chunk.toString('latin1');
      const head = text.slice(0, text.indexOf('\r\n\r\n')).toLowerCase();
      resolve(reader(Number(/^http\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head));
    });
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${hostname}\r\nAccept: application/json\r\n\r\n`);
  });
}

/** `GET url` answered at all within `limitMs` (a generous bound: "never hangs", not a speed). */
async function answers(url: string, limitMs = 5000): Promise<number> {
  const response = await fetch(url, { signal: AbortSignal.timeout(limitMs) });
  await response.arrayBuffer();
  return response.status;
}

export interface StreamingInstance {
  url: string;
  /** MAX_CONCURRENT_STREAMS it runs with. */
  maxStreams: number;
  /** Snapshot streams it holds now. */
  activeStreams(): Promise<number> | number;
}

/**
 * More clients than MAX_CONCURRENT_STREAMS ask for a body of many pages and stop reading: the
 * first ones hold their streams, the rest are refused at once with 503 + Retry-After, and the
 * ordinary reads and the health check keep answering meanwhile. Once the clients leave, every
 * stream is released and a large body streams again.
 */
export async function stalledReadersDrill(
  instance: StreamingInstance,
  options: { readers?: number; path?: string } = {},
): Promise<void> {
  const { url, maxStreams } = instance;
  const path = options.path ?? '/api?q=a';
  const readers: StalledReader[] = [];
  try {
    for (let index = 0; index < (options.readers ?? 2 * maxStreams + 2); index += 1) {
      readers.push(await openStalledReader(url, path));
    }
    const statuses = readers.map((reader) => reader.status);
    assert.deepEqual(
      statuses,
      [
        ...Array<number>(maxStreams).fill(200),
        ...Array<number>(readers.length - maxStreams).fill(503),
      ],
      'the first MAX_CONCURRENT_STREAMS readers stream, the rest are refused at once',
    );
    for (const refused of readers.filter((reader) => reader.status === 503)) {
      assert.match(refused.head, /^retry-after: \d+$/m);
      assert.match(refused.head, /^content-type: application\/problem\+json/m);
      assert.match(refused.received(), /"code":"ERR_STREAMS_BUSY"/);
    }
    assert.equal(await instance.activeStreams(), maxStreams);
    for (const probe of ['/healthcheck', '/api/count', '/api/users/1', '/api?limit=10']) {
      assert.equal(await answers(`${url}${probe}`), 200, `${probe} answers beside stalled streams`);
    }
  } finally {
    for (const reader of readers) reader.destroy();
  }
  await eventually(
    async () => (await instance.activeStreams()) === 0,
    'the streams of clients that left are released',
    10_000,
  );
  const again = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(30_000) });
  assert.equal(again.status, 200);
  assert.equal((JSON.parse(await again.text()) as unknown[]).length > 2000, true);
}

/**
 * A client that stops reading is cut once it has taken nothing for STREAM_IDLE_TIMEOUT_MS: its
 * stream is released while it still holds the connection, and what it then reads ends short.
 */
export async function idleStreamDrill(
  instance: StreamingInstance,
  options: { idleTimeoutMs: number; path?: string },
): Promise<void> {
  const reader = await openStalledReader(instance.url, options.path ?? '/api?q=a');
  try {
    assert.equal(reader.status, 200);
    assert.equal(await instance.activeStreams(), 1);
    await eventually(
      async () => (await instance.activeStreams()) === 0,
      'the idle stream is cut and released',
      options.idleTimeoutMs + 10_000,
    );
    const body = await reader.resume();
    assert.doesNotMatch(body, /\r\n0\r\n\r\n$/, 'a cut body has no final chunk');
  } finally {
    reader.destroy();
  }
}
