import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';

/**
 * The docs page's Content-Security-Policy: the plugin's own (`staticCSP: true`) minus
 * `upgrade-insecure-requests` (opened over plain HTTP by a host name, as behind compose's HAProxy
 * on :80, the browser fetched every asset over https and the page stayed blank), plus the hash
 * of the one inline `<style>` Swagger UI renders, its logo's (swagger-api/swagger-ui#10655).
 */
const DOCS_CSP = {
  'default-src': ["'self'"],
  'base-uri': ["'self'"],
  'font-src': ["'self'", 'https:', 'data:'],
  'frame-ancestors': ["'self'"],
  'img-src': ["'self'", 'data:', 'validator.swagger.io'],
  'object-src': ["'none'"],
  'script-src': ["'self'"],
  'script-src-attr': ["'none'"],
  'style-src': ["'self'", 'https:', "'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='"],
};

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
    staticCSP: DOCS_CSP,
    uiConfig: { url: '/openapi.json', deepLinking: false },
  });
  app.get('/openapi.json', { schema: { hide: true } }, (_request, reply) =>
    reply.type('application/json; charset=utf-8').send(app.swagger()),
  );
}
