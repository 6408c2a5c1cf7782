/**
 * The lab's delaying proxy must be a faithful slow link: every byte arrives, in order, late.
 * A reordered chunk garbles the MySQL protocol behind it (a read that waits for bytes that never
 * come, a stream cut mid-body), which is not a fault the lab means to inject.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server } from 'node:net';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { startDelayProxy, type DelaySettings } from '../../scripts/delay-proxy.js';

const port = (server: Server) => (server.address() as AddressInfo).port;

/**
 * Sends `lines` numbered lines through a proxy with `settings` (changed to `after` halfway),
 * a few at a time with pauses of 0–3 ms so that chunks arrive while earlier ones wait; returns
 * what the far end received.
 */
async function sendThrough(
  settings: DelaySettings,
  lines: number,
  after: DelaySettings = settings,
): Promise<{ received: number[]; ms: number }> {
  const chunks: Buffer[] = [];
  let ended: () => void = () => {};
  const whole = new Promise<void>((resolve) => (ended = resolve));
  const sink = createServer((socket) => {
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => {
      ended();
      socket.end();
    });
  });
  sink.listen(0, '127.0.0.1');
  await once(sink, 'listening');
  let current = settings;
  const proxy = await startDelayProxy(
    { host: '127.0.0.1', port: 0 },
    { host: '127.0.0.1', port: port(sink) },
    () => current,
  );
  const startedAt = Date.now();
  try {
    const client = connect({ host: '127.0.0.1', port: port(proxy), noDelay: true });
    await once(client, 'connect');
    client.resume();
    for (let line = 0; line < lines; line += 1) {
      if (line === Math.floor(lines / 2)) current = after;
      client.write(`${line}\n`);
      if (line % 3 === 0) await sleep(Math.random() * 3);
    }
    client.end();
    // Bounded: the far end sees the end once everything before it is across.
    await Promise.race([
      whole,
      sleep(30_000, undefined, { ref: false }).then(() =>
        assert.fail('the proxy did not deliver the whole stream'),
      ),
    ]);
    client.destroy();
  } finally {
    proxy.close();
    sink.close();
  }
  const text = Buffer.concat(chunks).toString();
  return {
    received: text === '' ? [] : text.trimEnd().split('\n').map(Number),
    ms: Date.now() - startedAt,
  };
}

const inOrder = (count: number) => Array.from({ length: count }, (_, line) => line);

describe('the delaying proxy (scripts/delay-proxy.ts)', { timeout: 120_000 }, () => {
  it('delivers every chunk in order under latency and jitter', async () => {
    const { received, ms } = await sendThrough({ delayMs: 100, jitterMs: 20 }, 3000);
    assert.deepEqual(received, inOrder(3000));
    assert.ok(ms >= 100, `the stream took ${ms} ms: it was not delayed`);
  });

  it('keeps the order when the delay is removed mid-stream (a heal)', async () => {
    const { received } = await sendThrough({ delayMs: 100, jitterMs: 20 }, 3000, {
      delayMs: 0,
      jitterMs: 0,
    });
    assert.deepEqual(received, inOrder(3000));
  });
});
