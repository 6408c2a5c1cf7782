import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Database } from '../db/database.js';
import { listUsers } from '../db/users-repository.js';
import { ProblemSchema, registerMethodNotAllowed } from './problem.js';

/** The public shape of a user: these keys, in this order, string values (the seed's contract). */
export const ApiUserSchema = Type.Object(
  {
    NAME: Type.String(),
    STREET: Type.String(),
    CITY: Type.String(),
    STATE: Type.String(),
    USER_DATE: Type.String(),
  },
  { additionalProperties: false },
);

/** `GET /api`: every user in load order. */
export function registerUsersRoutes(app: FastifyInstance, deps: { db: Database }): void {
  app.get(
    '/api',
    {
      schema: {
        querystring: Type.Object({}, { additionalProperties: false }),
        response: { 200: Type.Array(ApiUserSchema), 400: ProblemSchema, 503: ProblemSchema },
      },
    },
    async () => {
      const users = await deps.db.read(listUsers);
      return users.map((user) => ({
        NAME: user.name,
        STREET: user.street,
        CITY: user.city,
        STATE: user.state,
        USER_DATE: user.userDate,
      }));
    },
  );
  registerMethodNotAllowed(app, '/api', ['GET']);
}
