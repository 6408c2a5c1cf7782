import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MonitorState } from '../../src/monitor/monitor-state.js';
import { parseDuration } from '../../src/monitor/parse-duration.js';
import type { ProbeResult } from '../../src/monitor/probe-url.js';
import { runMonitor, summarizeMonitor } from '../../src/monitor/run-monitor.js';
import type { Alert } from '../../src/monitor/send-alert.js';

describe('parseDuration', () => {
  it('reads ms, s, m and h', () => {
    assert.deepEqual(
      ['500ms', '2s', '1.5s', '5m', '1h'].map(parseDuration),
      [500, 2000, 1500, 300_000, 3_600_000],
    );
  });
  it('refuses bare numbers and other units', () => {
    for (const text of ['5', '', 's', '2 d', '-1s', '1e3ms', '2sec']) {
      assert.equal(parseDuration(text), undefined, text);
    }
  });
});

/** Runs the loop over scripted results, one round per result, with a fake clock. */
async function runScript(results: boolean[], state: MonitorState = { version: 1, urls: {} }) {
  const url = 'http://target/healthcheck';
  const alerts: Alert[] = [];
  const stop = new AbortController();
  const clock = { now: Date.UTC(2025, 0, 1) };
  let round = 0;
  await runMonitor(
    { urls: [url], intervalMs: 1000, downAfter: 2 },
    state,
    {
      probe: (): Promise<ProbeResult> => {
        const ok = results[round++]!;
        if (round === results.length) stop.abort();
        return Promise.resolve(
          ok ? { ok, latencyMs: round, status: 200 } : { ok, latencyMs: 10, reason: 'status 503' },
        );
      },
      alert: (alert) => {
        alerts.push(alert);
        return Promise.resolve({ delivered: true, attempts: 1 });
      },
      save: () => Promise.resolve(),
      observe: () => undefined,
      log: () => undefined,
      now: () => clock.now,
      sleep: (ms) => {
        clock.now += ms;
        return Promise.resolve();
      },
    },
    stop.signal,
  );
  return { alerts, state, url };
}

describe('runMonitor', () => {
  it('alerts once per change: down after 2 failures, up on the first success', async () => {
    const { alerts, state, url } = await runScript([
      true,
      false,
      true,
      false,
      false,
      false,
      true,
      true,
    ]);
    assert.deepEqual(
      alerts.map((alert) => [alert.event, alert.reason, alert.downForSeconds]),
      [
        ['down', 'status 503', undefined],
        ['up', undefined, 2],
      ],
    );
    assert.deepEqual(
      { ...state.urls[url]!, latenciesMs: state.urls[url]!.latenciesMs.length },
      {
        state: 'up',
        since: '2025-01-01T00:00:06.000Z',
        consecutiveFailures: 0,
        checks: 8,
        failures: 4,
        latenciesMs: 8,
      },
    );
  });

  it('alerts when it starts down, and not again after a restart with the same state', async () => {
    const first = await runScript([false, false, false]);
    assert.deepEqual(
      first.alerts.map((alert) => alert.event),
      ['down'],
    );
    const second = await runScript([false, false], first.state);
    assert.deepEqual(second.alerts, []);
    const third = await runScript([true], second.state);
    assert.deepEqual(
      third.alerts.map((alert) => alert.event),
      ['up'],
    );
  });

  it('summarizes uptime, checks, failures and latency percentiles', async () => {
    const { state, url } = await runScript([true, true, true, false]);
    assert.deepEqual(summarizeMonitor(state, [url]), [
      `${url}: up, uptime 75.00%, 4 checks, 1 failures, p50 2ms, p95 10ms`,
    ]);
  });
});
