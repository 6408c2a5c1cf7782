import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { isBackupFileName } from '../backup/backup-format.js';
import { listBackups } from '../backup/list-backups.js';
import { restoreBackup } from '../backup/restore-backup.js';
import { takeBackup } from '../backup/take-backup.js';
import type { Config } from '../config/config.js';
import type { Database } from '../db/database.js';
import { AppError } from '../errors.js';
import { adminOnly } from './authorize-admin.js';
import { describeFileSystemError, isFileSystemError } from './file-system-error.js';
import { ProblemSchema, registerMethodNotAllowed } from './problem.js';

const ManifestSchema = Type.Object({
  formatVersion: Type.Integer(),
  schemaVersion: Type.String(),
  createdAt: Type.String(),
  sourceDialect: Type.String(),
  source: Type.String(),
  serverName: Type.String(),
  rows: Type.Integer(),
});

const BackupListingSchema = Type.Union([
  Type.Object({ file: Type.String(), bytes: Type.Integer(), manifest: ManifestSchema }),
  Type.Object({ file: Type.String(), problem: Type.String() }),
]);

const BackupTakenSchema = Type.Object({
  file: Type.String(),
  bytes: Type.Integer(),
  rows: Type.Integer(),
  sha256: Type.String(),
  createdAt: Type.String(),
  source: Type.String(),
  deleted: Type.Array(Type.String()),
});

const RestoredSchema = Type.Object({
  status: Type.Literal('restored'),
  file: Type.String(),
  rows: Type.Integer(),
  sha256: Type.String(),
});

const problems = (statuses: number[]) =>
  Object.fromEntries(statuses.map((status) => [status, ProblemSchema]));

/**
 * Admin routes over BACKUP_DIR: `GET /admin/backups` lists the backups (newest first, with
 * their manifests), `POST /admin/backups` takes one now, `POST /admin/backups/:file/restore`
 * restores one (verified first; a bad file is a 422 and changes nothing). One backup or restore
 * at a time per process: another one meanwhile is a 409.
 */
export function registerBackupsRoutes(
  app: FastifyInstance,
  deps: { config: Config; db: Database; metrics: { backupSucceeded(at: Date): void } },
): void {
  const { config, db, metrics } = deps;
  const routes = app.withTypeProvider<TypeBoxTypeProvider>();
  const onRequest = adminOnly(config.adminToken);
  let busy: string | undefined;
  const exclusive = async <T>(what: string, work: () => Promise<T>): Promise<T> => {
    if (busy !== undefined) {
      throw new AppError('ERR_BACKUP_IN_PROGRESS', `a ${busy} is running; try again when it ends`);
    }
    busy = what;
    try {
      return await work();
    } finally {
      busy = undefined;
    }
  };

  routes.get(
    '/admin/backups',
    {
      onRequest,
      schema: {
        querystring: Type.Object({}, { additionalProperties: false }),
        response: {
          200: Type.Object({ backups: Type.Array(BackupListingSchema) }),
          ...problems([400, 401, 403, 500, 503]),
        },
      },
    },
    async () => {
      const listings = await listBackups(config.backupDir);
      return {
        backups: listings.map((listing) =>
          'problem' in listing
            ? listing
            : {
                file: listing.file,
                bytes: listing.bytes,
                manifest: { ...listing.manifest, rows: listing.manifest.rowCount },
              },
        ),
      };
    },
  );

  routes.post(
    '/admin/backups',
    {
      onRequest,
      schema: {
        querystring: Type.Object({}, { additionalProperties: false }),
        response: { 201: BackupTakenSchema, ...problems([400, 401, 403, 409, 500, 503]) },
      },
    },
    async (request, reply) => {
      const backup = await exclusive('backup', () =>
        takeBackup(db, {
          dir: config.backupDir,
          serverName: config.serverName,
          succeeded: (at) => metrics.backupSucceeded(at),
        }),
      ).catch((error: unknown) => {
        // Every file a backup writes is in BACKUP_DIR: name the setting an operator can fix.
        if (!isFileSystemError(error)) throw error;
        throw new AppError(
          'ERR_BACKUP_DIR_NOT_WRITABLE',
          `BACKUP_DIR cannot be written: ${describeFileSystemError(error)}; give the service's user write access to it or set BACKUP_DIR to a folder it can write (the server log has the path under request id ${request.id})`,
          { cause: error },
        );
      });
      request.log.info({ file: backup.file, rows: backup.rows }, 'backup taken');
      return reply.code(201).send({
        file: backup.file,
        bytes: backup.bytes,
        rows: backup.rows,
        sha256: backup.sha256,
        createdAt: backup.manifest.createdAt,
        source: backup.manifest.source,
        deleted: backup.deleted,
      });
    },
  );

  routes.post(
    '/admin/backups/:file/restore',
    {
      onRequest,
      schema: {
        params: Type.Object({ file: Type.String() }),
        querystring: Type.Object({}, { additionalProperties: false }),
        response: { 200: RestoredSchema, ...problems([400, 401, 403, 404, 409, 422, 500, 503]) },
      },
    },
    async (request) => {
      const { file } = request.params;
      // Only names of backup files: never a path that reaches outside BACKUP_DIR.
      if (!isBackupFileName(file)) {
        throw new AppError(
          'ERR_BACKUP_NOT_FOUND',
          `${JSON.stringify(file)} is not a backup file name (users-YYYYMMDDTHHMMSS.sssZ.ndjson.gz); GET /admin/backups lists them`,
        );
      }
      const summary = await exclusive('restore', () =>
        restoreBackup(db, join(config.backupDir, file)),
      );
      request.log.warn({ file, rows: summary.rows }, 'users table restored from a backup');
      return { status: 'restored' as const, file, rows: summary.rows, sha256: summary.sha256 };
    },
  );

  registerMethodNotAllowed(app, '/admin/backups', ['GET', 'POST']);
  registerMethodNotAllowed(app, '/admin/backups/:file/restore', ['POST']);
}
