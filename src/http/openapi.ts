import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';

/**
 * OpenAPI 3.1 at `/openapi.json`, generated from the route schemas registered after this, and
 * Swagger UI at `/docs`, its assets served from the installed package (no network at runtime).
 * Method-not-allowed routes and the docs' own routes are left out of the document.
 */
export function registerOpenApi(app: FastifyInstance, options: { version: string }): void {
  void app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'users-api',
        description:
          'A users directory. Bare `GET /api` is the original contract; everything else is opt-in.',
        version: options.version,
      },
    },
    hideUntagged: false,
  });
  void app.register(swaggerUi, {
    routePrefix: '/docs',
    staticCSP: true,
    uiConfig: { url: '/openapi.json', deepLinking: false },
  });
  app.get('/openapi.json', { schema: { hide: true } }, (_request, reply) =>
    reply.type('application/json; charset=utf-8').send(app.swagger()),
  );
}
