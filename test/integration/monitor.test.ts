import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it, type TestContext } from 'node:test';
import { REPO_ROOT } from '../helpers/paths.js';

const BIN = join(REPO_ROOT, 'dist/main.js');
/** Every wait in these tests gives up after this: a broken monitor fails, never hangs. */
const WAIT_LIMIT_MS = 20_000;

async function waitFor(what: string, condition: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_LIMIT_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function listen(server: Server, port = 0): Promise<number> {
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

async function close(server: Server): Promise<void> {
  if (!server.listening) return;
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}

/** A real server on a free loopback port that can be stopped and started again on that port. */
async function startTarget(t: TestContext, mode: 'ok' | 'hang' = 'ok') {
  let requests = 0;
  const server = createServer((_request, response) => {
    requests += 1;
    if (mode === 'ok') response.end('all good from target');
    // 'hang': never answer; the monitor's timeout must give up on it.
  });
  const port = await listen(server);
  t.after(() => close(server));
  return {
    url: `http://127.0.0.1:${port}/healthcheck`,
    requests: () => requests,
    stop: () => close(server),
    start: () => listen(server, port),
  };
}

/** A real webhook receiver; it refuses the first POST with 500 when asked, to test retries. */
async function startWebhook(t: TestContext, options: { failFirst?: boolean } = {}) {
  const accepted: Record<string, unknown>[] = [];
  let posts = 0;
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      posts += 1;
      if (options.failFirst === true && posts === 1) {
        response.writeHead(500).end();
        return;
      }
      accepted.push(JSON.parse(Buffer.concat(chunks).toString()) as Record<string, unknown>);
      response.end('ok');
    });
  });
  const port = await listen(server);
  t.after(() => close(server));
  return { url: `http://127.0.0.1:${port}/hook`, accepted, posts: () => posts };
}

/** Runs `users-api monitor` (the built binary); killed when the test ends if still running. */
function startMonitor(t: TestContext, args: string[]) {
  const child = spawn(process.execPath, [BIN, 'monitor', ...args], {
    env: { PATH: process.env.PATH },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = once(child, 'close').then(([code]) => code as number | null);
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  const lines: string[] = [];
  let stderr = '';
  createInterface({ input: child.stdout }).on('line', (line) => lines.push(line));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return {
    lines,
    exited,
    stderr: () => stderr,
    /** SIGTERM, then the exit code once stdout is drained. */
    stop: async () => {
      child.kill('SIGTERM');
      return exited;
    },
  };
}

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'users-api-monitor-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe('users-api monitor', () => {
  it('alerts exactly once when the server goes down and once when it is back', async (t) => {
    const target = await startTarget(t);
    const webhook = await startWebhook(t, { failFirst: true });
    const statePath = join(await tempDir(t), 'state.json');
    const args = [
      ...['--url', target.url, '--interval', '100ms', '--timeout', '1s', '--down-after', '2'],
      ...['--expect', 'all good', '--webhook', webhook.url, '--webhook-retries', '2'],
      ...['--webhook-timeout', '2s', '--state', statePath, '--port', '0'],
    ];
    const monitor = startMonitor(t, args);
    await waitFor('3 checks', () => target.requests() >= 3);
    const metricsUrl = await metricsUrlOf(monitor.lines);
    assert.match(await (await fetch(metricsUrl)).text(), probeSample(target.url, 1));

    await target.stop();
    await waitFor('the down alert', () => webhook.accepted.length === 1);
    assert.match(await (await fetch(metricsUrl)).text(), probeSample(target.url, 0));
    await target.start();
    await waitFor('the up alert', () => webhook.accepted.length === 2);
    const checksAfterUp = target.requests();
    await waitFor('2 more checks', () => target.requests() >= checksAfterUp + 2);

    assert.equal(await monitor.stop(), 0, monitor.stderr());
    assert.deepEqual(
      webhook.accepted.map((alert) => [alert.event, alert.url, alert.source]),
      [
        ['down', target.url, 'users-api monitor'],
        ['up', target.url, 'users-api monitor'],
      ],
    );
    assert.match(String(webhook.accepted[0]!.reason), /^connection failed \(ECONNREFUSED\)$/);
    assert.equal(webhook.posts(), 3, 'the first POST got 500 and was retried');
    const summary = monitor.lines.slice(monitor.lines.indexOf('summary:'));
    assert.equal(summary.length, 2, monitor.lines.join('\n'));
    assert.match(
      summary[1]!,
      new RegExp(
        `^  ${target.url}: up, uptime \\d+\\.\\d\\d%, \\d+ checks, [1-9]\\d* failures, p50 [\\d.]+ms, p95 [\\d.]+ms$`,
      ),
    );
    const state = JSON.parse(await readFile(statePath, 'utf8')) as {
      urls: Record<string, { state: string; checks: number }>;
    };
    assert.equal(state.urls[target.url]!.state, 'up');

    // A restart with the same state file remembers the history and does not alert again.
    const again = startMonitor(t, args);
    const before = target.requests();
    await waitFor('2 checks after the restart', () => target.requests() >= before + 2);
    assert.equal(await again.stop(), 0, again.stderr());
    assert.equal(webhook.accepted.length, 2);
    const checks = Number(/, (\d+) checks,/.exec(again.lines.at(-1)!)?.[1]);
    assert.ok(checks >= state.urls[target.url]!.checks + 2, again.lines.at(-1));
  });

  it('counts a server that never answers as down after the timeout', async (t) => {
    const target = await startTarget(t, 'hang');
    const webhook = await startWebhook(t);
    const monitor = startMonitor(t, [
      ...['--url', target.url, '--interval', '100ms', '--timeout', '300ms'],
      ...['--down-after', '1', '--webhook', webhook.url],
    ]);
    await waitFor('the down alert', () => webhook.accepted.length === 1);
    assert.equal(await monitor.stop(), 0, monitor.stderr());
    assert.deepEqual(
      [webhook.accepted[0]!.event, webhook.accepted[0]!.reason],
      ['down', 'timeout after 300ms'],
    );
    assert.match(monitor.lines.at(-1)!, /: down, uptime 0\.00%, /);
  });

  it('accepts the longest durations and waits the interval out', async (t) => {
    const target = await startTarget(t);
    const monitor = startMonitor(t, [
      ...['--url', target.url, '--interval', '24h', '--timeout', '1h'],
      ...['--max-latency', '1h', '--webhook-timeout', '1h'],
    ]);
    await waitFor('the first check', () => target.requests() === 1);
    // The bounds themselves are accepted, and the longest interval is waited out.
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(target.requests(), 1);
    assert.equal(await monitor.stop(), 0, monitor.stderr());
  });

  it('exits 2 with a clear message for bad arguments', async (t) => {
    const cases: [string[], string][] = [
      [[], 'users-api: monitor needs at least one --url\n'],
      [
        ['--url', 'localhost:8888'],
        'users-api: "localhost:8888" is not an http:// or https:// URL\n',
      ],
      [
        ['--url', 'http://127.0.0.1:9/', '--interval', '30'],
        'users-api: --interval "30" is not a duration such as 500ms, 30s or 5m\n',
      ],
      [
        ['--url', 'http://127.0.0.1:9/', '--timeout', '0s'],
        'users-api: --timeout "0s" is not a duration such as 500ms, 30s or 5m\n',
      ],
      // setTimeout fires at once beyond ~24.8 days: a longer interval would probe in a loop.
      [
        ['--url', 'http://127.0.0.1:9/', '--interval', '600h'],
        'users-api: --interval "600h" is over 24h\n',
      ],
      [
        ['--url', 'http://127.0.0.1:9/', '--interval', '1441m'],
        'users-api: --interval "1441m" is over 24h\n',
      ],
      [
        ['--url', 'http://127.0.0.1:9/', '--timeout', '600h'],
        'users-api: --timeout "600h" is over 1h\n',
      ],
      [
        ['--url', 'http://127.0.0.1:9/', '--max-latency', '61m'],
        'users-api: --max-latency "61m" is over 1h\n',
      ],
      [
        ['--url', 'http://127.0.0.1:9/', '--webhook-timeout', '2h'],
        'users-api: --webhook-timeout "2h" is over 1h\n',
      ],
      [
        ['--url', 'http://127.0.0.1:9/', '--down-after', 'two'],
        'users-api: --down-after "two" must be an integer from 1 to 1000\n',
      ],
      [
        ['--url', 'http://127.0.0.1:9/', '--webhook', 'mailto:ops@example.com'],
        'users-api: "mailto:ops@example.com" is not an http:// or https:// URL\n',
      ],
    ];
    for (const [args, message] of cases) {
      const monitor = startMonitor(t, args);
      // An argument wrongly accepted starts monitoring, which never exits on its own.
      const running = new Promise<string>((resolve) =>
        setTimeout(resolve, WAIT_LIMIT_MS, 'still running').unref(),
      );
      assert.equal(await Promise.race([monitor.exited, running]), 2, args.join(' '));
      assert.equal(monitor.stderr(), message);
      assert.deepEqual(monitor.lines, []);
    }
  });
});

async function metricsUrlOf(lines: string[]): Promise<string> {
  await waitFor('the metrics URL', () => lines.some((line) => line.includes('metrics listening')));
  const line = lines.find((candidate) => candidate.includes('metrics listening'))!;
  return (JSON.parse(line) as { url: string }).url;
}

function probeSample(url: string, value: 0 | 1): RegExp {
  return new RegExp(`^probe_success\\{url="${url.replaceAll('.', '\\.')}"\\} ${value}$`, 'm');
}
