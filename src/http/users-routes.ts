import { pipeline, Readable } from 'node:stream';
import { createBrotliCompress, createGzip } from 'node:zlib';
import { Type, type Static } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Database } from '../db/database.js';
import {
  countMatchingUsers,
  findUsers,
  type UsersFilter,
  type UsersPage,
  type UsersPosition,
  type UsersQuery,
  type UsersSortKey,
} from '../db/users-repository.js';
import { AppError } from '../errors.js';
import { ApiUserWithIdSchema } from './single-user-routes.js';
import type { ApiCache, ContentEncoding } from './api-cache.js';
import { brotliOptions, GZIP_OPTIONS } from './compression.js';
import {
  createUsersWriter,
  CSV_PROFILES,
  DEFAULT_COLUMNS,
  type CsvProfile,
  MEDIA_TYPES,
  USERS_FORMATS,
  type UsersFormat,
  PUBLIC_COLUMNS,
  type PublicColumn,
} from './format-users.js';
import { acceptedEncodings, negotiateEncoding, negotiateFormat } from './negotiate.js';
import {
  NO_CONTROL_CHARACTERS_PATTERN,
  ProblemSchema,
  registerMethodNotAllowed,
} from './problem.js';
import { MIN_COMPRESS_BYTES, sendApiBody } from './send-api-body.js';
import { readBareUsersBody, readUsersBody, type StreamLimits } from './stream-users.js';

const SORTS = ['NAME', 'CITY', 'STATE', 'USER_DATE'] as const;
const SORT_PARAMETERS = [...SORTS, ...SORTS.map((sort) => `-${sort}` as const)];
type SortParameter = (typeof SORT_PARAMETERS)[number];
const SORT_KEYS: Record<(typeof SORTS)[number], UsersSortKey> = {
  NAME: 'name',
  CITY: 'city',
  STATE: 'state',
  USER_DATE: 'userDate',
};

const COLUMN_LIST = PUBLIC_COLUMNS.join('|');

const FilterProperties = {
  state: Type.Optional(
    Type.String({
      pattern: '^[A-Za-z]{2}$',
      description: 'Users in this state (two-letter code, any case), e.g. `NY`.',
    }),
  ),
  city: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 255,
      pattern: NO_CONTROL_CHARACTERS_PATTERN,
      description: 'Users in this city (exact).',
    }),
  ),
  name: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 255,
      pattern: NO_CONTROL_CHARACTERS_PATTERN,
      description: 'NAME starts with this, ignoring case.',
    }),
  ),
  q: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 255,
      pattern: NO_CONTROL_CHARACTERS_PATTERN,
      description: 'NAME, STREET, CITY or STATE contains this, ignoring case.',
    }),
  ),
};

const ApiQuerySchema = Type.Object(
  {
    ...FilterProperties,
    sort: Type.Optional(
      Type.Unsafe<SortParameter>({
        type: 'string',
        enum: SORT_PARAMETERS,
        description:
          'Sort by this column (`-` for descending; USER_DATE as a date), ties in load order. Default: load order.',
      }),
    ),
    limit: Type.Optional(
      Type.String({
        pattern: '^(1000|[1-9][0-9]{0,2})$',
        description:
          'At most this many users (1 to 1000). A full page carries `Link: <…>; rel="next"`.',
      }),
    ),
    cursor: Type.Optional(
      Type.String({
        pattern: '^[A-Za-z0-9_-]{1,1024}$',
        description:
          'Opaque: from a `rel="next"` or `rel="prev"` link. Continues after (or, for `prev`, before) that page.',
      }),
    ),
    fields: Type.Optional(
      Type.String({
        pattern: `^(${COLUMN_LIST})(,(${COLUMN_LIST}))*$`,
        description:
          'Comma-separated columns to include, e.g. `NAME,CITY`; `ID` adds the row id. Keys keep the order ID, NAME, STREET, CITY, STATE, USER_DATE.',
      }),
    ),
    format: Type.Optional(
      Type.Unsafe<UsersFormat>({
        type: 'string',
        enum: [...USERS_FORMATS],
        description:
          'Answer in this format whatever `Accept` says (a link in a browser cannot set `Accept`): `json`, `ndjson` (`application/x-ndjson`) or `csv` (`text/csv`, the import format). Works with every filter, sort, paging and `fields`; `csv=spreadsheet` goes with `format=csv` or no `format`.',
      }),
    ),
    csv: Type.Optional(
      Type.Unsafe<CsvProfile>({
        type: 'string',
        enum: [...CSV_PROFILES],
        description:
          "Answer `text/csv`, whatever `Accept` says, written for: `plain`, the import format (loads back unchanged; the same as `Accept: text/csv`); `spreadsheet`, to open in a spreadsheet: every cell quoted, a cell starting with `=`, `+`, `-`, `@`, TAB or CR prefixed with `'` so it shows as text instead of running as a formula, and a UTF-8 BOM. Not for re-import.",
      }),
    ),
  },
  { additionalProperties: false },
);
type ApiQuery = Static<typeof ApiQuerySchema>;

const CountQuerySchema = Type.Object(FilterProperties, { additionalProperties: false });

const ApiResponseSchema = {
  description:
    'The users, in load order unless sorted. Bare `/api` is the seed contract: a JSON array of every user with exactly the keys NAME, STREET, CITY, STATE, USER_DATE.',
  content: {
    'application/json': { schema: Type.Array(Type.Partial(ApiUserWithIdSchema)) },
    'application/x-ndjson': { schema: Type.String({ description: 'one JSON object per line' }) },
    'text/csv': {
      schema: Type.String({
        description:
          'header row, then one line per user (import format; for spreadsheets with `csv=spreadsheet`)',
      }),
    },
  },
};

export interface UsersRoutesDependencies {
  db: Database;
  apiCache: ApiCache;
  streamLimits: StreamLimits;
}

/**
 * `GET /api`: the seed's contract when bare (every user, load order, JSON), served from the
 * versioned cache with a strong ETag; filters, sort, keyset paging, fields and formats opt-in.
 * `GET /api/count`.
 */
export function registerUsersRoutes(app: FastifyInstance, deps: UsersRoutesDependencies): void {
  const { db, apiCache, streamLimits } = deps;
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  api.get(
    '/api',
    {
      schema: {
        summary: 'List users',
        querystring: ApiQuerySchema,
        response: {
          200: ApiResponseSchema,
          206: {
            description:
              'One byte range of the bare body (`Range: bytes=…`, honoured when `If-Range` is absent or the current ETag), uncompressed',
            type: 'null',
          },
          304: { description: 'Not modified: the ETag in If-None-Match is current', type: 'null' },
          400: ProblemSchema,
          416: ProblemSchema,
          503: ProblemSchema,
        },
      },
    },
    async (request, reply) => {
      const parameters = request.query;
      const format = formatOf(parameters, request.headers.accept);
      const encoding = negotiateEncoding(request.headers['accept-encoding']);
      reply.header('vary', 'Accept, Accept-Encoding');
      // `/api?format=json` is the bare body too: the same cached bytes and ETag.
      if (format === 'json' && Object.keys(parameters).every((name) => name === 'format')) {
        const built = apiCache.fresh() ?? (await apiCache.current());
        if (built !== undefined) {
          const preferred = acceptedEncodings(request.headers['accept-encoding']);
          return sendApiBody(request, reply, built, preferred, streamLimits);
        }
        const body = await readBareUsersBody(db, streamLimits);
        return reply.type(MEDIA_TYPES.json).send(compressStream(body, reply, encoding));
      }
      const query = usersQueryOf(parameters);
      if (query.before !== undefined && parameters.limit === undefined) {
        throw new AppError(
          'ERR_HTTP_BAD_REQUEST',
          'query parameter "cursor" is from a rel="prev" link, which needs its "limit"',
        );
      }
      const writer = createUsersWriter(format, columnsOf(parameters.fields), parameters.csv);
      reply.type(MEDIA_TYPES[format]);
      if (parameters.limit !== undefined) {
        const limit = Number(parameters.limit);
        const page = await db.read((executor) => findUsers(executor, query, limit));
        const links = pageLinks(request, parameters, query, page, limit);
        if (links !== '') reply.header('link', links);
        const text = writer.head + writer.rows(page.users, true) + writer.tail;
        return sendBuffer(reply, Buffer.from(text), encoding);
      }
      const body = await readUsersBody(db, streamLimits, query, writer);
      return reply.send(compressStream(body, reply, encoding));
    },
  );

  api.get(
    '/api/count',
    {
      schema: {
        summary: 'Count users (with the same filters as /api)',
        querystring: CountQuerySchema,
        response: {
          200: Type.Object({ count: Type.Integer() }),
          400: ProblemSchema,
          503: ProblemSchema,
        },
      },
    },
    async (request) => {
      const filter = filterOf(request.query);
      return { count: await db.read((executor) => countMatchingUsers(executor, filter)) };
    },
  );

  registerMethodNotAllowed(app, '/api', ['GET']);
  registerMethodNotAllowed(app, '/api/count', ['GET']);
}

async function sendBuffer(
  reply: FastifyReply,
  body: Buffer,
  encoding: ContentEncoding | undefined,
) {
  if (encoding === undefined || body.length < MIN_COMPRESS_BYTES) return reply.send(body);
  return reply.send(compressStream(Readable.from([body]), reply, encoding));
}

/** The body through br or gzip; a client that leaves tears down the whole chain. */
function compressStream(
  body: Readable,
  reply: FastifyReply,
  encoding: ContentEncoding | undefined,
): Readable {
  if (encoding === undefined) return body;
  reply.header('content-encoding', encoding);
  const compressor =
    encoding === 'br' ? createBrotliCompress(brotliOptions()) : createGzip(GZIP_OPTIONS);
  // Errors end up destroying the response (Fastify watches the returned stream); the callback
  // only has to exist for pipeline to clean up both streams.
  pipeline(body, compressor, () => undefined);
  return compressor;
}

/** `format`, else `csv` (which implies CSV), else what `Accept` prefers. */
function formatOf(parameters: ApiQuery, accept: string | undefined): UsersFormat {
  if (
    parameters.format !== undefined &&
    parameters.csv !== undefined &&
    parameters.format !== 'csv'
  ) {
    throw new AppError(
      'ERR_HTTP_BAD_REQUEST',
      `query parameter "csv" goes with format=csv, not format=${parameters.format}`,
    );
  }
  return parameters.format ?? (parameters.csv === undefined ? negotiateFormat(accept) : 'csv');
}

function filterOf(parameters: Static<typeof CountQuerySchema>): UsersFilter {
  return {
    state: parameters.state?.toUpperCase(),
    city: parameters.city,
    namePrefix: parameters.name,
    contains: parameters.q,
  };
}

function usersQueryOf(parameters: ApiQuery): UsersQuery {
  const sort = parameters.sort ?? '';
  const descending = sort.startsWith('-');
  const sortKey: UsersSortKey =
    sort === '' ? 'id' : SORT_KEYS[sort.replace(/^-/, '') as (typeof SORTS)[number]];
  const cursor =
    parameters.cursor === undefined ? undefined : decodeCursor(parameters.cursor, sort);
  return {
    ...filterOf(parameters),
    sort: sortKey,
    descending,
    after: cursor?.backward === false ? cursor.position : undefined,
    before: cursor?.backward === true ? cursor.position : undefined,
  };
}

function columnsOf(fields: string | undefined): readonly PublicColumn[] {
  if (fields === undefined) return DEFAULT_COLUMNS;
  const wanted = new Set(fields.split(','));
  return PUBLIC_COLUMNS.filter((column) => wanted.has(column));
}

/**
 * A cursor is base64url JSON: the sort it belongs to and the position of a page's last row (or,
 * with `b`, of the first row of the page after the one it stands for: a `rel="prev"` cursor).
 */
function encodeCursor(sort: string, position: UsersPosition, backward: boolean): string {
  const cursor = { s: sort, k: position.key, i: position.id, ...(backward ? { b: 1 } : {}) };
  return Buffer.from(JSON.stringify(cursor)).toString('base64url');
}

function decodeCursor(
  cursor: string,
  sort: string,
): { position: UsersPosition; backward: boolean } {
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    decoded = undefined;
  }
  const { s, k, i, b } = (decoded ?? {}) as { s?: unknown; k?: unknown; i?: unknown; b?: unknown };
  const valid =
    typeof s === 'string' &&
    (b === undefined || b === 1) &&
    (typeof k === 'string' || typeof k === 'number') &&
    typeof i === 'number' &&
    Number.isSafeInteger(i);
  if (!valid) {
    throw new AppError(
      'ERR_HTTP_BAD_REQUEST',
      'query parameter "cursor" is not a cursor this API made; use the rel="next" or rel="prev" link',
    );
  }
  if (s !== sort) {
    throw new AppError(
      'ERR_HTTP_BAD_REQUEST',
      `query parameter "cursor" belongs to sort ${JSON.stringify(s || 'load order')}, not ${JSON.stringify(sort || 'load order')}`,
    );
  }
  return { position: { key: k, id: i }, backward: b === 1 };
}

/**
 * The `Link` header of a page: `rel="next"` after a full page (or any page reached backward),
 * `rel="prev"` before a page reached by a cursor when rows may come before it.
 */
function pageLinks(
  request: FastifyRequest,
  parameters: ApiQuery,
  query: UsersQuery,
  page: UsersPage,
  limit: number,
): string {
  const links: string[] = [];
  const backward = query.before !== undefined;
  const next = backward ? (page.last ?? query.before) : page.last;
  if (next !== undefined && (backward || page.users.length === limit)) {
    links.push(`<${pageUrl(request, parameters, next, false)}>; rel="next"`);
  }
  const prev = backward ? page.first : (page.first ?? query.after);
  if (prev !== undefined && (backward ? page.moreBefore === true : query.after !== undefined)) {
    links.push(`<${pageUrl(request, parameters, prev, true)}>; rel="prev"`);
  }
  return links.join(', ');
}

function pageUrl(
  request: FastifyRequest,
  parameters: ApiQuery,
  position: UsersPosition,
  backward: boolean,
): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(parameters)) {
    if (name !== 'cursor' && typeof value === 'string') search.set(name, value);
  }
  search.set('cursor', encodeCursor(parameters.sort ?? '', position, backward));
  return `${request.url.split('?')[0]}?${search.toString()}`;
}
