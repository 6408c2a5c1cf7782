import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ApiCache } from './api-cache.js';
import { writeBuffers } from './write-buffers.js';
import { MEDIA_TYPES } from './format-users.js';
import { acceptsHealthJson, allGoodFrom, TEXT, type Readiness } from './health-routes.js';
import { negotiateEncoding, negotiateFormat } from './negotiate.js';
import type { RequestAccounting } from './request-accounting.js';

export interface FastPathDependencies {
  apiCache: ApiCache;
  readiness: Readiness;
  serverName: string;
  /** True from the start of a shutdown (draining, or the app closing): the app answers then. */
  isStopping: () => boolean;
  accounting: RequestAccounting;
}

/** Answers a request itself (true) or leaves it to the app (false). */
export type FastPath = (request: IncomingMessage, response: ServerResponse) => boolean;

/**
 * The two requests that come by the thousand, answered from memory straight on node:http:
 * HAProxy's `GET /healthcheck` while the last readiness read is fresh, and the bare `GET /api`
 * (no query, JSON, uncompressed, unconditional, no Range) while the cached body is current. Going through
 * the framework's routing, validation and reply machinery cost a third of their throughput
 * (bench/run.ts). Everything else — a query string, another format, compression, If-None-Match,
 * HEAD, a stale cache or readiness, a shutdown under way — goes to the app, which answers every case; the
 * integration test 'the fast path answers exactly as the app does' holds both to the same
 * status, headers and bytes, and each request is logged and counted the same way.
 */
export function createFastPath(deps: FastPathDependencies): FastPath {
  const { apiCache, readiness, accounting } = deps;
  // A string body, unlike a Buffer, goes out in one write with the head (node:http joins them):
  // 2-5% more /healthcheck throughput against node:http with the same headers.
  const allGood = allGoodFrom(deps.serverName);
  const allGoodBytes = Buffer.byteLength(allGood);
  // Each head is a flat [name, value, …] list written out in full, never an object spread from
  // shared headers: a spread here brought back the slow tick objects of pin-next-tick-shape.ts
  // (docs/design-notes.md, "The fast path for /api and /healthcheck").
  const healthHead = (requestId: string) => [
    'x-request-id',
    requestId,
    'cache-control',
    'no-store',
    'content-type',
    TEXT,
    'content-length',
    allGoodBytes,
  ];
  const answer = (
    request: IncomingMessage,
    response: ServerResponse,
    route: string,
    head: (requestId: string) => (string | number)[],
    body: readonly Buffer[] | string,
  ) => {
    const started = performance.now();
    const requestId = accounting.requestId(request.headers['x-request-id']);
    accounting.started();
    // Counted when the response is done, as the app's onResponse/onRequestAbort hooks do: a
    // large body to a slow client takes its real time, and one cut short is not a 200.
    // `on`, not `once`: a response closes once, and once's wrapper is an allocation per request.
    response.on('close', () => {
      if (!response.writableFinished) return accounting.aborted();
      accounting.finished({
        requestId,
        method: 'GET',
        route,
        status: 200,
        durationMs: performance.now() - started,
      });
    });
    response.writeHead(200, head(requestId));
    if (typeof body === 'string' || body.length === 1) {
      response.end(typeof body === 'string' ? body : body[0]);
    } else {
      writeBuffers(response, body);
    }
    return true;
  };
  return (request, response) => {
    if (request.method !== 'GET' || deps.isStopping()) return false;
    const { url, headers } = request;
    if (url === '/api') {
      if (
        headers['if-none-match'] !== undefined ||
        headers.range !== undefined ||
        negotiateFormat(headers.accept) !== 'json' ||
        negotiateEncoding(headers['accept-encoding']) !== undefined
      ) {
        return false;
      }
      const cached = apiCache.fresh();
      // Page files go through the app (ranges, holding the files while they are read).
      if (cached?.memory === undefined) return false;
      const { etag, memory } = cached;
      return answer(
        request,
        response,
        '/api',
        (requestId) => [
          'x-request-id',
          requestId,
          'vary',
          'Accept, Accept-Encoding',
          'cache-control',
          'no-cache',
          'accept-ranges',
          'bytes',
          'content-type',
          MEDIA_TYPES.json,
          'etag',
          etag,
          'content-length',
          memory.length,
        ],
        memory.chunks,
      );
    }
    if (url === '/healthcheck') {
      if (acceptsHealthJson(headers.accept) || readiness.fresh() === undefined) return false;
      return answer(request, response, '/healthcheck', healthHead, allGood);
    }
    return false;
  };
}
