import { randomUUID } from 'node:crypto';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Config } from './config/config.js';
import type { Database } from './db/database.js';
import { registerAddToSqlRoutes } from './http/addtosql-routes.js';
import { registerHealthRoutes } from './http/health-routes.js';
import { registerProblemHandlers } from './http/problem.js';
import { registerUsersRoutes } from './http/users-routes.js';

export interface AppDependencies {
  config: Config;
  db: Database;
  logger: FastifyBaseLogger;
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

  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
  });
  app.addHook('onResponse', async (request, reply) => {
    request.log.info(
      {
        method: request.method,
        route: request.routeOptions.url ?? 'unmatched',
        status: reply.statusCode,
        durationMs: Math.round(reply.elapsedTime * 10) / 10,
        server: deps.config.serverName,
      },
      'request',
    );
  });

  registerProblemHandlers(app);
  registerUsersRoutes(app, deps);
  registerHealthRoutes(app, { db: deps.db, serverName: deps.config.serverName });
  registerAddToSqlRoutes(app, deps);
  return app;
}
