import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Metrics } from '../metrics/create-metrics.js';
import { ProblemSchema, registerMethodNotAllowed } from './problem.js';
import { requireMetricsToken } from './require-metrics-token.js';

/**
 * `GET /metrics`: Prometheus text format. With METRICS_TOKEN set, the scraper must send
 * `Authorization: Bearer <token>` (Prometheus: `authorization: { credentials_file: … }`);
 * without one it is open, and should stay off the public HAProxy frontend.
 */
export function registerMetricsRoutes(
  app: FastifyInstance,
  deps: { metrics: Metrics; metricsToken: string | undefined },
): void {
  const { metrics, metricsToken } = deps;
  app.get(
    '/metrics',
    {
      schema: {
        querystring: Type.Object({}, { additionalProperties: false }),
        response: { 200: Type.String(), 400: ProblemSchema, 401: ProblemSchema },
      },
    },
    async (request, reply) => {
      requireMetricsToken(request, metricsToken);
      reply.type(metrics.contentType).header('cache-control', 'no-store');
      return metrics.render();
    },
  );
  registerMethodNotAllowed(app, '/metrics', ['GET']);
}
