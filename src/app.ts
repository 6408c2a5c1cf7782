import { randomUUID } from 'node:crypto';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, {
  LogController,
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyRequest,
} from 'fastify';
import type { Config } from './config/config.js';
import type { Database } from './db/database.js';
import { registerAddToSqlRoutes } from './http/addtosql-routes.js';
import { registerBackupsRoutes } from './http/backups-routes.js';
import { createApiCache } from './http/api-cache.js';
import { registerHealthRoutes } from './http/health-routes.js';
import { registerMetricsRoutes } from './http/metrics-routes.js';
import { registerOpenApi } from './http/openapi.js';
import { registerProblemHandlers } from './http/problem.js';
import { registerUsersRoutes } from './http/users-routes.js';
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
}

const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Server timeouts, in one place. Keep-alive outlives a load balancer's idle timeout so the
 * balancer, not the app, closes idle connections (no request races a closing socket).
 */
const KEEP_ALIVE_TIMEOUT_MS = 65_000;
const REQUEST_TIMEOUT_MS = 300_000;

/** Builds the HTTP app from its dependencies. Never listens, never reads the environment. */
export function buildApp(deps: AppDependencies): FastifyInstance {
  const app = Fastify({
    loggerInstance: deps.logger,
    // One log line per request, written by the onResponse hook below.
    logController: new LogController({ disableRequestLogging: true }),
    requestIdHeader: false,
    genReqId: (request) => {
      const given = request.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID_PATTERN.test(given) ? given : randomUUID();
    },
    keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    requestTimeout: REQUEST_TIMEOUT_MS,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false } },
  }).withTypeProvider<TypeBoxTypeProvider>();

  // Requests counted in http_requests_in_flight; each leaves once, by response or by abort.
  const inFlight = new WeakSet<FastifyRequest>();
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    inFlight.add(request);
    deps.metrics.requestStarted();
  });
  app.addHook('onRequestAbort', (request, done) => {
    if (inFlight.delete(request)) deps.metrics.requestFinished(undefined, 0);
    done();
  });
  // One log line and one histogram sample per request. The route is the template (or
  // `unmatched` for 404s), never the raw URL: label values stay bounded. Bodies, query
  // strings and headers are never logged (they may carry tokens or personal data).
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'unmatched';
    if (inFlight.delete(request)) {
      deps.metrics.requestFinished(
        { method: request.method, route, status: reply.statusCode },
        reply.elapsedTime / 1000,
      );
    }
    request.log.info(
      {
        method: request.method,
        route,
        status: reply.statusCode,
        durationMs: Math.round(reply.elapsedTime * 10) / 10,
        // `server` comes from the logger's base fields (createLogger); repeating it here wrote
        // the key twice in every line.
      },
      'request',
    );
  });

  // The bare /api body, cached per data version; a write through this instance is seen at once,
  // one through another instance within API_CACHE_CHECK_MS.
  const apiCache = createApiCache({
    db: deps.db,
    maxBytes: deps.config.apiCacheMaxBytes,
    checkMs: deps.config.apiCacheCheckMs,
  });

  registerProblemHandlers(app);
  // The OpenAPI document is built from the routes registered after it (in the plugin below, so
  // that its route hook is in place first): /openapi.json and the docs page at /docs.
  registerOpenApi(app, { version: deps.version });
  void app.register((routes, _options, done) => {
    registerUsersRoutes(routes, { db: deps.db, apiCache });
    registerHealthRoutes(routes, {
      db: deps.db,
      serverName: deps.config.serverName,
      version: deps.version,
      now: deps.now,
      startedAt: deps.startedAt,
      countUsersRows: deps.countUsersRows,
      isDraining: () => deps.lifecycle?.draining ?? false,
    });
    registerAddToSqlRoutes(routes, {
      config: deps.config,
      db: deps.db,
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
    done();
  });
  return app;
}
