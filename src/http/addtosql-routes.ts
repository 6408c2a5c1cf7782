import type { Readable } from 'node:stream';
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Config } from '../config/config.js';
import type { Database } from '../db/database.js';
import { AppError } from '../errors.js';
import {
  fileImportSource,
  formatOfFileName,
  type ImportFormat,
} from '../importer/import-source.js';
import {
  IMPORT_MODES,
  importUsers,
  type AppendWritten,
  type ImportMode,
  type ImportObserver,
  type ImportResult,
} from '../importer/import-users.js';
import type { ImportSource } from '../importer/import-source.js';
import { readUsersGeneration } from '../db/users-repository.js';
import { adminOnly } from './authorize-admin.js';
import { hasBody } from './has-body.js';
import {
  IDEMPOTENCY_KEY_DESCRIPTION,
  outcomeGone,
  parseIdempotencyKey,
  sha256Hex,
  sha256OfFile,
  type IdempotencyKeys,
} from './idempotency-keys.js';
import { ProblemSchema, registerMethodNotAllowed } from './problem.js';
import { spoolUpload, uploadTooLarge } from './spool-upload.js';

const ImportResultSchema = Type.Union([
  Type.Object({ status: Type.Literal('imported'), rows: Type.Integer() }),
  Type.Object({
    status: Type.Literal('skipped'),
    reason: Type.Literal('table not empty'),
    rows: Type.Integer(),
  }),
]);

const FORMAT_BY_MEDIA_TYPE: Record<string, ImportFormat> = {
  'text/csv': 'csv',
  'application/json': 'json',
  'application/x-ndjson': 'ndjson',
};

/**
 * `POST /addtosql`: with no body, imports DATA_FILE if the table is empty (the seed's
 * behaviour, open to anyone, safe to repeat). With a CSV, JSON or NDJSON body, or a mode other
 * than if-empty, it is an admin operation.
 */
export function registerAddToSqlRoutes(
  app: FastifyInstance,
  deps: {
    config: Config;
    db: Database;
    metrics: { importFinished: ImportObserver };
    idempotencyKeys: IdempotencyKeys;
  },
): void {
  const { config, db, idempotencyKeys } = deps;
  const observe = deps.metrics.importFinished;
  const dataFileFormat = formatOfFileName(config.dataFile) ?? 'csv';

  void app.register((scope, _options, done) => {
    // Bodies reach the handler as streams: uploads are spooled to disk, never held in memory.
    scope.removeAllContentTypeParsers();
    scope.addContentTypeParser('*', (_request, payload, parsed) => parsed(null, payload));

    scope.withTypeProvider<TypeBoxTypeProvider>().post(
      '/addtosql',
      {
        onRequest: adminOnly(config.adminToken, isAdminImport),
        schema: {
          querystring: Type.Object(
            {
              mode: Type.Optional(
                Type.Unsafe<ImportMode>({ type: 'string', enum: [...IMPORT_MODES] }),
              ),
            },
            { additionalProperties: false },
          ),
          headers: Type.Object({
            'idempotency-key': Type.Optional(
              Type.String({
                description: `With mode=append only (the other modes are idempotent already). ${IDEMPOTENCY_KEY_DESCRIPTION}`,
              }),
            ),
          }),
          response: {
            200: ImportResultSchema,
            ...Object.fromEntries(
              [400, 401, 403, 409, 410, 413, 415, 422, 500, 503].map((s) => [s, ProblemSchema]),
            ),
          },
        },
      },
      async (request, reply) => {
        const mode = request.query.mode ?? 'if-empty';
        const mediaType = mediaTypeOf(request);
        const format = FORMAT_BY_MEDIA_TYPE[mediaType];
        // A malformed key is refused before the upload is read.
        if (mode === 'append') parseIdempotencyKey(request.headers['idempotency-key']);
        /** An append once per Idempotency-Key (the other modes are idempotent already). */
        const runImport = (source: ImportSource, bodySha256: string) => {
          const claim =
            mode === 'append' ? idempotencyKeys.claimOf(request, bodySha256) : undefined;
          if (claim === undefined) return importUsers(db, source, mode, observe);
          return idempotencyKeys.run<AppendWritten, ImportResult>(claim, {
            replay: async (record) => {
              if ((await readUsersGeneration(db.write)) !== record.usersGeneration) {
                throw outcomeGone('appended rows');
              }
              request.log.info({ idempotentReplay: { action: 'append' } }, 'replayed');
              reply.header('idempotent-replayed', 'true');
              return JSON.parse(record.body) as ImportResult;
            },
            write: (keyed) => importUsers(db, source, mode, observe, keyed),
            outcomeOf: (written) => ({
              status: 200,
              userId: undefined,
              usersGeneration: written.usersGeneration,
              body: JSON.stringify({ status: 'imported', rows: written.rows }),
            }),
          });
        };
        if (!isUpload(request)) {
          const source = fileImportSource(
            config.dataFile,
            dataFileFormat,
            'ERR_IMPORT_DATA_FILE_MISSING',
          );
          return runImport(source, sha256Hex(''));
        }
        if (format === undefined) {
          throw new AppError(
            'ERR_HTTP_UNSUPPORTED_MEDIA_TYPE',
            `cannot import ${mediaType || 'a body without Content-Type'}; send ${Object.keys(FORMAT_BY_MEDIA_TYPE).join(', ')}`,
          );
        }
        const declared = Number(request.headers['content-length'] ?? 0);
        if (declared > config.maxUploadBytes) throw uploadTooLarge(config.maxUploadBytes);

        const spooled = await spoolUpload(request.body as Readable, config.maxUploadBytes);
        try {
          const bodySha256 = mode === 'append' ? await sha256OfFile(spooled.path) : '';
          return await runImport(fileImportSource(spooled.path, format), bodySha256);
        } finally {
          await spooled.remove();
        }
      },
    );
    done();
  });
  registerMethodNotAllowed(app, '/addtosql', ['POST']);
}

function mediaTypeOf(request: FastifyRequest): string {
  return (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

/**
 * An import media type makes a request an upload even when empty (that is a client's mistake to
 * report); any other type counts only with a body (curl -d '' sends a form type).
 */
function isUpload(request: FastifyRequest): boolean {
  return FORMAT_BY_MEDIA_TYPE[mediaTypeOf(request)] !== undefined || hasBody(request.raw);
}

/** An upload, or any mode but the seed's if-empty (even one that is not valid): admin only. */
function isAdminImport(request: FastifyRequest): boolean {
  const { mode } = request.query as { mode?: unknown };
  return isUpload(request) || (mode !== undefined && mode !== 'if-empty');
}
