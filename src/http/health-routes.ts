import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Database } from '../db/database.js';
import { probeUsersTable } from '../db/users-repository.js';
import { registerMethodNotAllowed } from './problem.js';

const TextSchema = Type.String();

/**
 * `/healthcheck` is the readiness check the load balancer polls (the seed's contract): 200
 * `all good from <name>` when this instance can read users, else 503 with a one-line reason.
 * `/livez` says only that the process answers; it does no I/O, for container health checks.
 */
export function registerHealthRoutes(
  app: FastifyInstance,
  deps: { db: Database; serverName: string },
): void {
  app.get(
    '/healthcheck',
    { schema: { response: { 200: TextSchema, 503: TextSchema } } },
    async (request, reply) => {
      reply.type('text/plain; charset=utf-8').header('cache-control', 'no-store');
      try {
        await deps.db.read(probeUsersTable);
      } catch (error) {
        request.log.warn({ err: error }, 'healthcheck: users table unreadable');
        return reply.code(503).send('database unavailable: cannot read the users table');
      }
      return `all good from ${deps.serverName}`;
    },
  );
  app.get('/livez', { schema: { response: { 200: TextSchema } } }, async (_request, reply) => {
    reply.type('text/plain; charset=utf-8').header('cache-control', 'no-store');
    return 'ok';
  });
  registerMethodNotAllowed(app, '/healthcheck', ['GET']);
  registerMethodNotAllowed(app, '/livez', ['GET']);
}
