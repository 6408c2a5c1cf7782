import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Gauge, Registry } from 'prom-client';
import type { ProbeResult } from './probe-url.js';

export interface ProbeMetricsServer {
  /** e.g. http://127.0.0.1:9115/metrics */
  url: string;
  observe(url: string, result: ProbeResult): void;
  close(): Promise<void>;
}

/**
 * The monitor's own `/metrics`, shaped like blackbox_exporter's probe series so the same
 * dashboards and alerts read both: `probe_success` (0/1) and `probe_duration_seconds`, one
 * series per checked URL (label `url`: the monitor checks several targets in one process).
 */
export async function serveProbeMetrics(host: string, port: number): Promise<ProbeMetricsServer> {
  const registry = new Registry();
  const success = new Gauge({
    name: 'probe_success',
    help: 'Whether the last check of the URL succeeded (1) or failed (0).',
    labelNames: ['url'] as const,
    registers: [registry],
  });
  const duration = new Gauge({
    name: 'probe_duration_seconds',
    help: 'How long the last check of the URL took.',
    labelNames: ['url'] as const,
    registers: [registry],
  });
  const server = createServer((request, response) => {
    if (request.method !== 'GET' || request.url?.split('?')[0] !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (error: unknown) => response.writeHead(500).end(String(error)),
    );
  });
  server.listen(port, host);
  await once(server, 'listening');
  const address = server.address() as AddressInfo;
  const shownHost = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${shownHost}:${address.port}/metrics`,
    observe(url, result) {
      success.set({ url }, result.ok ? 1 : 0);
      duration.set({ url }, result.latencyMs / 1000);
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve, reject) =>
        server.close((error) => (error ? reject(error) : resolve())),
      );
    },
  };
}
