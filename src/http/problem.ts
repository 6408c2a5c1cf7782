import { maxHeaderSize, METHODS, STATUS_CODES, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Type } from '@sinclair/typebox';
import type {
  FastifyBaseLogger,
  FastifyError,
  FastifyInstance,
  FastifyReply,
  FastifyRequest,
} from 'fastify';
import { isDatabaseDataError, isDatabaseFailure } from '../db/is-database-failure.js';
import { AppError, ERROR_CODES, type ErrorCode } from '../errors.js';
import { describeFileSystemError, isFileSystemError } from './file-system-error.js';
import { hasBody } from './has-body.js';

/** RFC 9457 problem details, plus our stable `code` and, for bad rows, `errors`. */
export const ProblemSchema = Type.Object({
  type: Type.String(),
  title: Type.String(),
  status: Type.Integer(),
  detail: Type.String(),
  code: Type.String(),
  errors: Type.Optional(Type.Array(Type.String())),
});

/**
 * For free-text query values: no C0 control character or DEL. SQLite's LIKE stops at a NUL (so
 * `q=%00` matched every row) where MySQL's does not; neither is text a user searches for.
 */
export const NO_CONTROL_CHARACTERS_PATTERN = '^[^\\u0000-\\u001F\\u007F]*$';

interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  errors?: readonly string[];
}

/** Turns every error into `application/problem+json`; 5xx bodies never carry internal messages. */
export function registerProblemHandlers(app: FastifyInstance): void {
  app.setErrorHandler((error, request, reply) => {
    const problem = toProblem(error, request);
    if (error instanceof AppError && error.retryAfterSeconds !== undefined) {
      reply.header('retry-after', String(error.retryAfterSeconds));
    }
    if (problem.status >= 500) {
      request.log.error({ err: error, code: problem.code }, 'request failed');
    } else {
      request.log.info({ code: problem.code, detail: problem.detail }, 'request refused');
    }
    return sendProblem(request, reply, problem);
  });
  app.setNotFoundHandler((request, reply) =>
    sendProblem(
      request,
      reply,
      problemOf(
        'ERR_HTTP_NOT_FOUND',
        `no route for ${request.method} ${request.url.split('?')[0]}`,
      ),
    ),
  );
}

/**
 * Answers 405 for every method of `url` other than `allowed` (HEAD rides along with GET): every
 * method the app routes (see registerEveryHttpMethod), OPTIONS and TRACE included. There is no
 * CORS: OPTIONS is refused like any other method, and TRACE never echoes the request.
 */
export function registerMethodNotAllowed(
  app: FastifyInstance,
  url: string,
  allowed: readonly ('GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE')[],
): void {
  const allow: string[] = allowed.includes('GET') ? [...allowed, 'HEAD'] : [...allowed];
  const methods = app.supportedMethods.filter((method) => !allow.includes(method));
  const refuse = (request: FastifyRequest, reply: FastifyReply) => {
    reply.header('allow', allow.join(', '));
    return new AppError(
      'ERR_HTTP_METHOD_NOT_ALLOWED',
      `${request.method} is not supported on ${url}; use ${allow.join(' or ')}`,
    );
  };
  app.route({
    method: methods,
    url,
    exposeHeadRoute: false,
    schema: { hide: true, response: { 405: ProblemSchema } },
    // Refused before the body is read: a PUT with broken JSON is a 405 all the same.
    onRequest: (request, reply, done) => done(refuse(request, reply)),
    handler: (request, reply) => {
      throw refuse(request, reply);
    },
  });
}

/**
 * Routes every method node:http parses, not only the ones Fastify knows: a known URL then answers
 * 405 with Allow to PURGE or PROPFIND too, instead of 404. CONNECT never reaches the router
 * (node:http hands it to a 'connect' listener, and without one closes the connection).
 */
export function registerEveryHttpMethod(app: FastifyInstance): void {
  for (const method of METHODS) {
    if (method !== 'CONNECT' && !app.supportedMethods.includes(method)) app.addHttpMethod(method);
  }
}

/** What node:http reports when it refuses a request (llhttp's code and reason, the bytes read). */
type ClientError = Error & { code?: string; reason?: string; rawPacket?: Buffer };

/**
 * Answers what node:http refuses before the app sees a request (a request line or header that
 * is not HTTP, headers over the size limit, a request too slow to arrive) as problem+json with
 * an X-Request-Id, like every other answer, logs it under that id, and closes the connection.
 */
export function createClientErrorHandler(deps: {
  requestId: () => string;
  logger: FastifyBaseLogger;
}): (error: Error, socket: Socket) => void {
  return (thrown, socket) => {
    const error = thrown as ClientError;
    // A reset connection has nobody left to answer.
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    const problem = clientErrorProblem(error);
    const requestId = deps.requestId();
    deps.logger.info(
      { reqId: requestId, status: problem.status, code: problem.code, reason: error.code },
      'request refused by the HTTP parser',
    );
    // node:http's link to a response under way on this connection (pipelining): never write
    // into the middle of one.
    const inFlight = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
    if (socket.writable && inFlight?.headersSent !== true) {
      const body = JSON.stringify(problem);
      socket.write(
        `HTTP/1.1 ${problem.status} ${STATUS_CODES[problem.status]}\r\n` +
          'content-type: application/problem+json; charset=utf-8\r\n' +
          `content-length: ${Buffer.byteLength(body)}\r\n` +
          `x-request-id: ${requestId}\r\nconnection: close\r\n\r\n${body}`,
      );
    }
    socket.destroy();
  };
}

function clientErrorProblem(error: ClientError): Problem {
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    return problemOf(
      'ERR_HTTP_REQUEST_TIMEOUT',
      'the request did not arrive in full in time; send it again on a new connection',
    );
  }
  if (error.code === 'HPE_HEADER_OVERFLOW') {
    // The bytes read hold no end of the request line yet: the URL alone is over the limit.
    return /^[A-Z-]+ \S*$/.test(error.rawPacket?.toString('latin1') ?? '')
      ? problemOf(
          'ERR_HTTP_URI_TOO_LONG',
          `the URL is longer than the server reads in a request line and headers (${maxHeaderSize} bytes)`,
        )
      : problemOf(
          'ERR_HTTP_HEADERS_TOO_LARGE',
          `the request line and headers are larger than the server reads (${maxHeaderSize} bytes)`,
        );
  }
  // llhttp's reasons are fixed texts ("Invalid method encountered"), never request bytes.
  return problemOf(
    'ERR_HTTP_BAD_REQUEST',
    `the request is not valid HTTP/1.1: ${error.reason ?? error.code ?? 'unreadable'}`,
  );
}

function toProblem(thrown: unknown, request: FastifyRequest): Problem {
  if (thrown instanceof AppError) {
    const error = thrown;
    return {
      ...problemOf(error.code, error.message),
      ...(error.errors && { errors: error.errors }),
    };
  }
  const error = (
    thrown instanceof Error ? thrown : new Error(String(thrown))
  ) as Partial<FastifyError> & Error;
  if ('validation' in error && error.validation !== undefined) {
    const context =
      error.validationContext === 'querystring' ? 'query' : (error.validationContext ?? 'request');
    const details = error.validation.map((issue) => {
      if (issue.keyword === 'additionalProperties') {
        const name = String((issue.params as { additionalProperty?: unknown }).additionalProperty);
        return `unknown ${context} parameter ${JSON.stringify(name)}`;
      }
      const where = issue.instancePath.replace(/^\//, '').replaceAll('/', '.') || context;
      const pattern = (issue.params as { pattern?: unknown }).pattern;
      if (issue.keyword === 'pattern' && pattern === NO_CONTROL_CHARACTERS_PATTERN) {
        return `${context} parameter ${JSON.stringify(where)} must not contain control characters (U+0000 to U+001F, U+007F)`;
      }
      const allowed = (issue.params as { allowedValues?: unknown[] }).allowedValues;
      return `${context} parameter ${JSON.stringify(where)} ${issue.message ?? 'is invalid'}${
        allowed ? `: ${allowed.join(', ')}` : ''
      }`;
    });
    return problemOf('ERR_HTTP_BAD_REQUEST', details.join('; '));
  }
  const status = error.statusCode;
  if (status !== undefined && status >= 400 && status < 500) {
    // Fastify's own client errors (bad JSON, media type, body size) carry safe messages.
    const code: ErrorCode =
      status === 415
        ? 'ERR_HTTP_UNSUPPORTED_MEDIA_TYPE'
        : status === 413
          ? 'ERR_UPLOAD_TOO_LARGE'
          : 'ERR_HTTP_BAD_REQUEST';
    return problemOf(code, error.message);
  }
  if (isDatabaseFailure(thrown)) {
    return problemOf('ERR_DB_UNAVAILABLE', 'the database cannot be reached; try again shortly');
  }
  if (isDatabaseDataError(thrown)) {
    const code = (thrown as { code?: unknown }).code;
    return problemOf(
      'ERR_DB_DATA_REJECTED',
      `the database refused a value it was given${typeof code === 'string' ? ` (${code})` : ''}; the server log has the details under request id ${request.id}`,
    );
  }
  if (isFileSystemError(thrown)) {
    return problemOf(
      'ERR_STORAGE_FAILED',
      `a file operation on the server failed: ${describeFileSystemError(thrown)}; the server log has the path under request id ${request.id}`,
    );
  }
  return problemOf(
    'ERR_INTERNAL',
    `unexpected error; the server log has the details under request id ${request.id}`,
  );
}

function problemOf(code: ErrorCode, detail: string): Problem {
  const { status, title } = ERROR_CODES[code];
  return { type: `urn:users-api:problem:${code}`, title, status, detail, code };
}

function sendProblem(request: FastifyRequest, reply: FastifyReply, problem: Problem) {
  // A route that set its own challenge (the status page's Basic, for browsers) keeps it.
  if (problem.status === 401 && !reply.hasHeader('www-authenticate')) {
    reply.header('www-authenticate', 'Bearer');
  }
  // A refused upload's body is still arriving: closing beats reading gigabytes to discard them.
  // (A request without a body is not `complete` until its empty body is read: keep it alive.)
  if (hasBody(request.raw) && !request.raw.complete) reply.header('connection', 'close');
  return reply.code(problem.status).type('application/problem+json').send(problem);
}
