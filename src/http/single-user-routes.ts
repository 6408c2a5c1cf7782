import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Database } from '../db/database.js';
import { findUserById, type VersionedUser } from '../db/users-repository.js';
import { AppError } from '../errors.js';
import { USER_FIELDS, type RawUser, type User, type UserField } from '../users/user.js';
import { validateUser } from '../users/validate-user.js';
import { writeUser, type UserChange, type UserWritten } from '../users/write-user.js';
import type { KeyedWrite } from '../db/idempotency-keys-repository.js';
import type { ApiCache } from './api-cache.js';
import { adminOnly } from './authorize-admin.js';
import {
  IDEMPOTENCY_KEY_DESCRIPTION,
  outcomeGone,
  sha256Hex,
  type IdempotencyKeys,
} from './idempotency-keys.js';
import { toApiUserWithId, toDefaultObject } from './format-users.js';
import { ProblemSchema, registerMethodNotAllowed } from './problem.js';

/**
 * A user with its id: ID, then the seed contract's keys in its order, string values.
 */
export const ApiUserWithIdSchema = Type.Object(
  {
    ID: Type.Integer({ description: 'row id: load order; stable for the life of the row' }),
    NAME: Type.String(),
    STREET: Type.String(),
    CITY: Type.String(),
    STATE: Type.String(),
    USER_DATE: Type.String(),
  },
  { additionalProperties: false },
);

const IdParamsSchema = Type.Object({
  id: Type.String({ pattern: '^[1-9][0-9]{0,14}$', description: 'the row id (ID)' }),
});
const NoQuerySchema = Type.Object({}, { additionalProperties: false });

/** One user is five short fields: anything much larger is not one. */
const MAX_USER_BODY_BYTES = 16 * 1024;

const JSON_TYPE = 'application/json';
const MERGE_PATCH_TYPE = 'application/merge-patch+json';

const USER_BODY_DESCRIPTION = `Body: one JSON object with NAME, STREET, CITY, STATE and USER_DATE (strings, validated as an import's rows are); no other field (ID only when it is the user's own).`;

const problems = (...statuses: number[]) =>
  Object.fromEntries(statuses.map((status) => [status, ProblemSchema]));

export interface SingleUserRoutesDependencies {
  db: Database;
  apiCache: ApiCache;
  adminToken: string | undefined;
  idempotencyKeys: IdempotencyKeys;
}

/**
 * One user as a resource: `GET /api/users/:id` with a strong ETag (304 to If-None-Match), and,
 * for admins, `POST /api/users`, `PUT`, `PATCH` (JSON merge patch) and `DELETE`, each write
 * conditional on `If-Match` (optimistic concurrency: a stale ETag is 412, nothing changes).
 * A write re-renders only its user's page of the bare `/api` body (apiCache.noteChange).
 */
export function registerSingleUserRoutes(
  app: FastifyInstance,
  deps: SingleUserRoutesDependencies,
): void {
  const { db, apiCache, adminToken, idempotencyKeys } = deps;

  void app.register((scope, _options, done) => {
    // Bodies arrive as text and are judged here, so each fault gets its own status: a wrong
    // media type 415, broken JSON 400, a bad user 422 with every field's problem.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser(
      '*',
      { parseAs: 'string', bodyLimit: MAX_USER_BODY_BYTES },
      (_request, body, parsed) => parsed(null, body),
    );
    const routes = scope.withTypeProvider<TypeBoxTypeProvider>();
    const admin = adminOnly(adminToken);

    /** Runs `change` as one write, logs it for the audit trail, tells the page cache. */
    const write = async (
      request: FastifyRequest,
      action: 'create' | 'replace' | 'update' | 'delete',
      id: number | undefined,
      change: UserChange,
      keyed?: KeyedWrite<UserWritten>,
    ) => {
      const written = await writeUser(
        db,
        id,
        change,
        (pending) => {
          const changed = pending.after?.id ?? pending.before?.id;
          return apiCache.noteChange(pending.version, changed === undefined ? [] : [changed]);
        },
        keyed,
      );
      apiCache.committed(written.version);
      const changedId = written.after?.id ?? written.before?.id;
      request.log.info(
        {
          audit: {
            action,
            caller: 'admin',
            id: changedId,
            dataVersion: written.version,
            before: written.before && toApiUserWithId(written.before),
            after: written.after && toApiUserWithId(written.after),
          },
        },
        `user ${changedId} ${action}d`,
      );
      return written;
    };

    routes.get(
      '/api/users/:id',
      {
        schema: {
          summary: 'One user by id',
          description:
            'Carries a strong `ETag` (the row version and the table generation): send it as `If-None-Match` to revalidate, or as `If-Match` to change the user.',
          params: IdParamsSchema,
          querystring: NoQuerySchema,
          response: {
            200: ApiUserWithIdSchema,
            304: {
              description: 'Not modified: the ETag in If-None-Match is current',
              type: 'null',
            },
            ...problems(400, 404, 503),
          },
        },
      },
      async (request, reply) => {
        const user = await findOrNotFound(db, Number(request.params.id));
        const etag = userEtag(user);
        reply.header('etag', etag);
        const ifNoneMatch = request.headers['if-none-match'];
        if (ifNoneMatch !== undefined && etagListMatches(ifNoneMatch, etag, 'weak')) {
          return reply.code(304).send();
        }
        return toApiUserWithId(user);
      },
    );

    routes.post(
      '/api/users',
      {
        onRequest: admin,
        schema: {
          summary: 'Create one user (admin)',
          description: `${USER_BODY_DESCRIPTION} Answers 201 with \`Location\` and the user's \`ETag\`. With \`Idempotency-Key\`, a retry answers 201 again for the same user (\`Idempotent-Replayed: true\`, the user as it is now), or 410 when that user has been deleted or replaced since.`,
          querystring: NoQuerySchema,
          headers: Type.Object({
            'idempotency-key': Type.Optional(
              Type.String({ description: IDEMPOTENCY_KEY_DESCRIPTION }),
            ),
          }),
          response: {
            201: ApiUserWithIdSchema,
            ...problems(400, 401, 403, 409, 410, 413, 415, 422, 503),
          },
        },
      },
      async (request, reply) => {
        const claim = idempotencyKeys.claimOf(
          request,
          sha256Hex(typeof request.body === 'string' ? request.body : ''),
        );
        const body = jsonObjectOf(request, JSON_TYPE);
        rejectForeignId(body, undefined);
        const created = (written: UserWritten) => {
          const user = written.after!;
          reply.header('location', `/api/users/${user.id}`).header('etag', userEtag(user));
          return reply.code(201).send(toApiUserWithId(user));
        };
        if (claim === undefined) {
          return created(await write(request, 'create', undefined, () => wholeUser(body)));
        }
        return idempotencyKeys.run<UserWritten, FastifyReply>(claim, {
          replay: async (record) => {
            // The primary, in one statement with the table's generation: a replica may lag, and
            // a replace restarts ids, so the same id may now be somebody else.
            const user = await findUserById(db.write, record.userId ?? 0);
            if (user === undefined || user.generation !== record.usersGeneration) {
              throw outcomeGone(`created user ${record.userId}`);
            }
            // Nothing is written: no audit line, but a retry is worth seeing in the log.
            request.log.info({ idempotentReplay: { action: 'create', id: user.id } }, 'replayed');
            reply.header('idempotent-replayed', 'true');
            return created({ version: user.rowVersion, before: undefined, after: user });
          },
          write: async (keyed) =>
            created(await write(request, 'create', undefined, () => wholeUser(body), keyed)),
          outcomeOf: (written) => ({
            status: 201,
            userId: written.after!.id,
            usersGeneration: written.after!.generation,
            body: JSON.stringify(toApiUserWithId(written.after!)),
          }),
        });
      },
    );

    const conditionalWrite = (
      method: 'PUT' | 'PATCH' | 'DELETE',
      summary: string,
      description: string,
      bodyType: string | undefined,
      action: 'replace' | 'update' | 'delete',
      decide: (current: VersionedUser, body: Record<string, unknown>) => User | null,
    ) =>
      routes.route({
        method,
        url: '/api/users/:id',
        onRequest: admin,
        schema: {
          summary,
          description: `${description} Requires \`If-Match\` with the user's current ETag (or \`*\`): without it 428, stale 412, and nothing changes.`,
          params: IdParamsSchema,
          querystring: NoQuerySchema,
          headers: Type.Object({
            'if-match': Type.Optional(
              Type.String({ description: 'the ETag this change was made from, or `*`' }),
            ),
          }),
          response: {
            ...(method === 'DELETE'
              ? { 204: { description: 'Deleted', type: 'null' } }
              : { 200: ApiUserWithIdSchema }),
            ...problems(400, 401, 403, 404, 409, 412, 413, 415, 422, 428, 503),
          },
        },
        handler: async (request: FastifyRequest<{ Params: { id: string } }>, reply) => {
          const id = Number(request.params.id);
          const ifMatch = request.headers['if-match'];
          if (ifMatch === undefined) {
            throw new AppError(
              'ERR_HTTP_PRECONDITION_REQUIRED',
              `send If-Match with the ETag of GET /api/users/${id} (or *) so that a change made meanwhile is not overwritten`,
            );
          }
          const body = bodyType === undefined ? {} : jsonObjectOf(request, bodyType);
          const { after } = await write(request, action, id, (current) => {
            if (current === undefined) throw userNotFound(id);
            if (!etagListMatches(ifMatch, userEtag(current), 'strong')) {
              throw new AppError(
                'ERR_HTTP_PRECONDITION_FAILED',
                `user ${id} changed since that ETag (now ${userEtag(current)}): GET it again and redo the change; nothing was written`,
              );
            }
            rejectForeignId(body, id);
            return decide(current, body);
          });
          if (after === undefined) return reply.code(204).send();
          reply.header('etag', userEtag(after));
          return toApiUserWithId(after);
        },
      });

    conditionalWrite(
      'PUT',
      'Replace one user (admin)',
      `${USER_BODY_DESCRIPTION}`,
      JSON_TYPE,
      'replace',
      (_current, body) => wholeUser(body),
    );
    conditionalWrite(
      'PATCH',
      'Change some fields of one user (admin)',
      'A JSON merge patch (RFC 7396): the fields to change, as strings; `null` would remove a field, and every field is required, so it is refused.',
      MERGE_PATCH_TYPE,
      'update',
      (current, body) => mergedUser(current, body),
    );
    conditionalWrite(
      'DELETE',
      'Delete one user (admin)',
      'Ids are never reused.',
      undefined,
      'delete',
      () => null,
    );
    done();
  });
  registerMethodNotAllowed(app, '/api/users', ['POST']);
  registerMethodNotAllowed(app, '/api/users/:id', ['GET', 'PUT', 'PATCH', 'DELETE']);
}

/**
 * Strong: the row version (the data version of the write that last changed the user) and the
 * table's generation (replaced by a replace import or a restore, which restart ids at 1).
 */
function userEtag(user: VersionedUser): string {
  return `"u${user.id}-g${user.generation}-r${user.rowVersion}"`;
}

/**
 * Whether an If-Match / If-None-Match list names `etag`: `*` names any current user. If-Match
 * compares strongly (a weak tag never matches), If-None-Match weakly (RFC 9110, 13.1).
 */
function etagListMatches(header: string, etag: string, comparison: 'strong' | 'weak'): boolean {
  if (header.trim() === '*') return true;
  return header.split(',').some((candidate) => {
    const tag = candidate.trim();
    if (tag.startsWith('W/')) return comparison === 'weak' && tag.slice(2) === etag;
    return tag === etag;
  });
}

async function findOrNotFound(db: Database, id: number): Promise<VersionedUser> {
  const user = await db.read((executor) => findUserById(executor, id));
  if (user === undefined) throw userNotFound(id);
  return user;
}

function userNotFound(id: number): AppError {
  return new AppError('ERR_USER_NOT_FOUND', `no user with id ${id}`);
}

/** The request body as one JSON object, sent as `mediaType`. */
function jsonObjectOf(request: FastifyRequest, mediaType: string): Record<string, unknown> {
  const given = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (given !== mediaType) {
    throw new AppError(
      'ERR_HTTP_UNSUPPORTED_MEDIA_TYPE',
      `send the user as ${mediaType}, not ${given || 'a body without Content-Type'}`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof request.body === 'string' ? request.body : '');
  } catch {
    throw new AppError('ERR_HTTP_BAD_REQUEST', 'the body is not valid JSON');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw invalidUser(['the body must be one JSON object, e.g. {"NAME": "…", …}']);
  }
  return parsed as Record<string, unknown>;
}

function invalidUser(errors: readonly string[]): AppError {
  return new AppError('ERR_USER_INVALID', `the user is not valid: ${errors.join('; ')}`, {
    errors,
  });
}

const isUserField = (name: string): name is UserField =>
  (USER_FIELDS as readonly string[]).includes(name);

/** `ID` in a body may only repeat the user's own id (a client sending back what it read). */
function rejectForeignId(body: Record<string, unknown>, id: number | undefined): void {
  if ('ID' in body && body.ID !== id) {
    throw invalidUser([
      id === undefined
        ? 'ID: ids are given by the server; leave it out'
        : `ID: this is user ${id}; ids cannot change`,
    ]);
  }
}

/** The fields of `body` that are not a user's (ID aside), as problems. */
function unknownFields(body: Record<string, unknown>): string[] {
  return Object.keys(body)
    .filter((name) => name !== 'ID' && !isUserField(name))
    .map((name) => `${JSON.stringify(name)}: not a user field (${USER_FIELDS.join(', ')})`);
}

/** A POST or PUT body: all five fields, each a string, valid as an import's row. */
function wholeUser(body: Record<string, unknown>): User {
  const errors = unknownFields(body);
  for (const field of USER_FIELDS) {
    if (!(field in body)) errors.push(`${field}: required`);
    else if (typeof body[field] !== 'string') errors.push(`${field}: must be a string`);
  }
  if (errors.length > 0) throw invalidUser(errors);
  return validUser(body as RawUser);
}

/** `current` with the merge patch `patch` applied (RFC 7396), valid as an import's row. */
function mergedUser(current: VersionedUser, patch: Record<string, unknown>): User {
  const merged: RawUser = { ...toDefaultObject(current) };
  const errors = unknownFields(patch);
  for (const field of USER_FIELDS) {
    if (!(field in patch)) continue;
    const value = patch[field];
    if (value === null) errors.push(`${field}: cannot be removed (null); every user has one`);
    else if (typeof value !== 'string') errors.push(`${field}: must be a string`);
    else merged[field] = value;
  }
  if (errors.length > 0) throw invalidUser(errors);
  return validUser(merged);
}

function validUser(raw: RawUser): User {
  const validation = validateUser(raw);
  if (!validation.ok) {
    throw invalidUser(validation.problems.map(({ field, reason }) => `${field}: ${reason}`));
  }
  return validation.user;
}
