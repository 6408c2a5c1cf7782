import { createServer } from 'node:http';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Config } from './config/config.js';
import type { Database } from './db/database.js';
import { AppError } from './errors.js';
import { registerAddToSqlRoutes } from './http/addtosql-routes.js';
import { registerBackupsRoutes } from './http/backups-routes.js';
import { createApiCache } from './http/api-cache.js';
import { createFastPath } from './http/fast-path.js';
import { createReadiness, registerHealthRoutes } from './http/health-routes.js';
import { LazyChildLogger } from './http/lazy-child-logger.js';
import { registerMetricsRoutes } from './http/metrics-routes.js';
import { registerOpenApi } from './http/openapi.js';
import {
  createClientErrorHandler,
  registerEveryHttpMethod,
  registerProblemHandlers,
} from './http/problem.js';
import { createRequestAccounting } from './http/request-accounting.js';
import { registerSingleUserRoutes } from './http/single-user-routes.js';
import { createIdempotencyKeys } from './http/idempotency-keys.js';
import { registerStatusRoutes } from './http/status-routes.js';
import { registerUsersRoutes } from './http/users-routes.js';
import { registerWebRoutes } from './http/web-routes.js';
import type { Metrics } from './metrics/create-metrics.js';

export interface AppDependencies {
  config: Config;
  db: Database;
  logger: FastifyBaseLogger;
  metrics: Metrics;
  /** Users row count for the health view, cached by the caller. */
  countUsersRows: () => Promise<number>;
  /** The package version, reported by the health view. */
  version: string;
  /** Milliseconds since the epoch; the health view's uptime and timestamps. */
  now: () => number;
  /** When the process started, in `now`'s clock. */
  startedAt: number;
  /** Set `draining` when shutdown begins: readiness fails while requests are still served. */
  lifecycle?: { draining: boolean };
  /** What the start-up steps still wait for (the primary), or why they failed; undefined: done. */
  startupState?: () => string | undefined;
}

/**
 * Server timeouts, in one place. Keep-alive outlives a load balancer's idle timeout so the
 * balancer, not the app, closes idle connections (no request races a closing socket).
 */
const KEEP_ALIVE_TIMEOUT_MS = 65_000;
const REQUEST_TIMEOUT_MS = 300_000;

/** Builds the HTTP app from its dependencies. Never listens, never reads the environment. */
export function buildApp(deps: AppDependencies): FastifyInstance {
  const accounting = createRequestAccounting(deps.metrics, deps.logger);
  const isDraining = () => deps.lifecycle?.draining ?? false;
  // Idempotency-Key records for the admin's creates and appends, by the app's clock.
  const idempotencyKeys = createIdempotencyKeys({
    db: deps.db,
    now: deps.now,
    ttlMs: deps.config.idempotencyKeyTtlMs,
  });
  // The bare /api body, cached per data version; a write through this instance is seen at once,
  // one through another instance within API_CACHE_CHECK_MS.
  const apiCache = createApiCache({
    db: deps.db,
    maxBytes: deps.config.apiCacheMaxBytes,
    checkMs: deps.config.apiCacheCheckMs,
    bodyDir: deps.config.apiBodyDir,
    events: {
      built: (info) => deps.logger.debug({ apiBody: info }, 'bare /api body built'),
      // The body streams from the database meanwhile: reads go on (a full disk, a bad folder).
      failed: (version, error) =>
        deps.logger.warn({ err: error, version }, 'bare /api page files failed: streaming'),
    },
  });
  const readiness = createReadiness({ db: deps.db, now: deps.now });
  // Set when app.close() begins: from then on the app answers every request (with
  // `Connection: close`), so keep-alive clients let go and the close can finish.
  let closing = false;
  const fastPath = createFastPath({
    apiCache,
    readiness,
    serverName: deps.config.serverName,
    isStopping: () => closing || isDraining(),
    accounting,
  });

  const app = Fastify({
    loggerInstance: deps.logger,
    // One log line per request, written by the onResponse hook below.
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: false,
    // request.log is made when something logs through it (an error, a warning), not for
    // every request: most requests never use it.
    childLoggerFactory: (logger, bindings, options) =>
      new LazyChildLogger(logger, bindings, options),
    genReqId: (request) => accounting.requestId(request.headers['x-request-id']),
    serverFactory: (handler) => {
      const server = createServer((request, response) => {
        if (!fastPath(request, response)) handler(request, response);
      });
      server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
      server.requestTimeout = REQUEST_TIMEOUT_MS;
      return server;
    },
    clientErrorHandler: createClientErrorHandler({
      requestId: () => accounting.requestId(undefined),
      logger: deps.logger,
    }),
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
    // Requests that arrive while the app closes are refused by the onRequest hook below, as
    // problem+json with a request id, instead of by Fastify's own JSON 503.
    return503OnClosing: false,
  }).withTypeProvider<TypeBoxTypeProvider>();

  app.addHook('preClose', (done) => {
    closing = true;
    done();
  });
  app.addHook('onClose', () => apiCache.close());

  // Requests counted in http_requests_in_flight; each leaves once, by response or by abort.
  // Callback hooks and a flag on the request: these run for every request, and async hooks,
  // a WeakSet and a child logger per request cost a third of /healthcheck's throughput.
  app.decorateRequest('inFlight', false);
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    request.inFlight = true;
    accounting.started();
    // Fastify has set `Connection: close`; HAProxy replays the 503 on the other server.
    if (closing) {
      done(new AppError('ERR_SHUTTING_DOWN', 'this instance is shutting down; try again'));
      return;
    }
    done();
  });
  app.addHook('onRequestAbort', (request, done) => {
    if (request.inFlight) {
      request.inFlight = false;
      accounting.aborted();
    }
    done();
  });
  app.addHook('onResponse', (request, reply, done) => {
    if (request.inFlight) {
      request.inFlight = false;
      accounting.finished({
        requestId: request.id,
        method: request.method,
        route: request.routeOptions.url ?? 'unmatched',
        status: reply.statusCode,
        durationMs: reply.elapsedTime,
      });
    }
    done();
  });

  registerProblemHandlers(app);
  registerEveryHttpMethod(app);
  // The OpenAPI document is built from the routes registered after it (in the plugin below, so
  // that its route hook is in place first): /openapi.json and the docs page at /docs.
  registerOpenApi(app, { version: deps.version });
  void app.register((routes, _options, done) => {
    registerUsersRoutes(routes, {
      db: deps.db,
      apiCache,
      streamLimits: {
        idleTimeoutMs: deps.config.streamIdleTimeoutMs,
        cut: () => deps.metrics.streamCut(),
      },
    });
    registerSingleUserRoutes(routes, {
      db: deps.db,
      apiCache,
      adminToken: deps.config.adminToken,
      idempotencyKeys,
    });
    registerHealthRoutes(routes, {
      db: deps.db,
      serverName: deps.config.serverName,
      version: deps.version,
      now: deps.now,
      startedAt: deps.startedAt,
      countUsersRows: deps.countUsersRows,
      isDraining,
      startupState: deps.startupState ?? (() => undefined),
      readiness,
      metricsToken: deps.config.metricsToken,
    });
    registerAddToSqlRoutes(routes, {
      config: deps.config,
      db: deps.db,
      idempotencyKeys,
      metrics: {
        importFinished: (outcome, rows) => {
          deps.metrics.importFinished(outcome, rows);
          apiCache.invalidate();
        },
      },
    });
    registerBackupsRoutes(routes, deps);
    registerMetricsRoutes(routes, {
      metrics: deps.metrics,
      metricsToken: deps.config.metricsToken,
    });
    registerStatusRoutes(routes, { ...deps, readiness, isDraining });
    // After the status routes: their guard covers /status and /status/assets/*.
    registerWebRoutes(routes);
    done();
  });
  return app;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Counted in http_requests_in_flight and not yet finished or aborted. */
    inFlight: boolean;
  }
}
