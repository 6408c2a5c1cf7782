import { randomBytes } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { Metrics } from '../metrics/create-metrics.js';

// deploy/haproxy/haproxy.cfg replaces an id that fails this rule, so both log the same one:
// change the two together.
const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/** What one finished request reports: its log line and its histogram sample. */
export interface FinishedRequest {
  requestId: string;
  method: string;
  /** The route template (`unmatched` for 404s), never the raw URL: label values stay bounded. */
  route: string;
  status: number;
  durationMs: number;
}

/**
 * The bookkeeping every request gets, whichever code answers it (Fastify's hooks, or the fast
 * path for the hottest requests): its id, the in-flight gauge, the duration histogram and one
 * log line. Bodies, query strings and headers are never logged (they may carry tokens or
 * personal data).
 */
export interface RequestAccounting {
  /** The caller's `X-Request-Id` when it is a sane token, else a new id (`<prefix>-<n>`). */
  requestId(given: string | string[] | undefined): string;
  started(): void;
  finished(request: FinishedRequest): void;
  /** The client went away before an answer: it leaves the in-flight gauge, nothing else. */
  aborted(): void;
}

export function createRequestAccounting(
  metrics: Metrics,
  logger: FastifyBaseLogger,
): RequestAccounting {
  // Generated ids are this process's random prefix and a counter: unique across instances and
  // restarts for all practical purposes, in order within a process, and a fraction of the cost
  // of a UUID per request (5% of /healthcheck's throughput, measured against node:http).
  const prefix = randomBytes(6).toString('hex');
  let issued = 0;
  return {
    requestId: (given) =>
      typeof given === 'string' && REQUEST_ID_PATTERN.test(given)
        ? given
        : `${prefix}-${(issued += 1).toString(36)}`,
    started: () => metrics.requestStarted(),
    finished({ requestId, method, route, status, durationMs }) {
      metrics.requestFinished({ method, route, status }, durationMs / 1000);
      // The request id under the same key as request.log's binding; `server` comes from the
      // logger's base fields (createLogger).
      logger.info(
        { reqId: requestId, method, route, status, durationMs: Math.round(durationMs * 10) / 10 },
        'request',
      );
    },
    aborted: () => metrics.requestFinished(undefined, 0),
  };
}
