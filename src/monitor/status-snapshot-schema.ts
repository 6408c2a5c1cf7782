import { Type, type Static } from '@sinclair/typebox';

const Nullable = <T extends ReturnType<typeof Type.Number>>(schema: T) =>
  Type.Union([schema, Type.Null()]);

/**
 * One database server as this instance sees it. `name` is a label from the configuration's
 * order (`primary`, `replica 1`, `replica 2`, … or `sqlite`), never a host name or URL: the
 * snapshot goes to browsers, screenshots and tickets, and the label is enough to find the
 * server in DATABASE_URL / DATABASE_REPLICA_URLS (docs/observability.md).
 */
export const StatusDatabaseSchema = Type.Object({
  name: Type.String(),
  /** What the server does now: the one taking writes is `primary` (a promoted replica too). */
  role: Type.Unsafe<'primary' | 'replica' | 'sqlite'>({
    type: 'string',
    enum: ['primary', 'replica', 'sqlite'],
  }),
  /** Its last probe was answered. */
  reachable: Type.Boolean(),
  /** MySQL: whether the last probe found it writable (read_only=OFF); absent when unknown. */
  writable: Type.Optional(Type.Boolean()),
  /** Replicas: in the read rotation now. The primary and SQLite: reads can go to it. */
  healthy: Type.Boolean(),
  /** Why it is not healthy, in plain words (no host names); null while healthy. */
  reason: Type.Union([Type.String(), Type.Null()]),
  /** Replicas: replication lag in seconds; null when unknown and for the primary. */
  lagSeconds: Nullable(Type.Number()),
});
export type StatusDatabase = Static<typeof StatusDatabaseSchema>;

/**
 * What `GET /status.json` answers and `GET /status/events` sends as each `event: status`.
 * Computed from the readings the health JSON and `/metrics` use (see status-snapshot.ts).
 */
export const StatusSnapshotSchema = Type.Object({
  /** ISO 8601: when the snapshot was taken. */
  at: Type.String(),
  instance: Type.Object({
    /** SERVER_NAME: the name `/healthcheck` answers with, already public. */
    name: Type.String(),
    version: Type.String(),
    uptimeSeconds: Type.Number(),
  }),
  /** The configured primary first, then the replicas in DATABASE_REPLICA_URLS order. */
  databases: Type.Array(StatusDatabaseSchema),
  data: Type.Object({
    /** The data version every write bumps; null when the database cannot be read. */
    version: Nullable(Type.Number()),
    /** Users rows (cached for a few seconds, as `users_rows`); null when unreadable. */
    rows: Nullable(Type.Number()),
  }),
  /** The last import this instance ran (POST /addtosql or the start-up import); null: none. */
  lastImport: Type.Union([
    Type.Object({
      at: Type.String(),
      outcome: Type.Unsafe<'imported' | 'skipped' | 'rejected' | 'failed'>({
        type: 'string',
        enum: ['imported', 'skipped', 'rejected', 'failed'],
      }),
      rows: Type.Number(),
    }),
    Type.Null(),
  ]),
  /** The last verified backup (BACKUP_DIR/last-success.json); null when none is recorded. */
  lastBackup: Type.Union([
    Type.Object({
      at: Type.String(),
      ageSeconds: Type.Number(),
      /** Size of the backup file; null when the file is no longer in BACKUP_DIR. */
      bytes: Nullable(Type.Number()),
      /** Only verified backups are recorded, so true; kept explicit for the page. */
      verified: Type.Boolean(),
      rows: Type.Number(),
    }),
    Type.Null(),
  ]),
  /** What is wrong now, one plain sentence each (no host names); empty when all is well. */
  problems: Type.Array(Type.String()),
  /** Null unless HAPROXY_STATS_URL is set. */
  haproxy: Type.Union([
    Type.Object({
      /** The server HAProxy sends traffic to: the first UP non-backup, else the first UP backup. */
      active: Type.Union([Type.String(), Type.Null()]),
      /** HAProxy's server names (haproxy.cfg), with its status (UP, DOWN, MAINT, …). */
      servers: Type.Array(
        Type.Object({ name: Type.String(), status: Type.String(), backup: Type.Boolean() }),
      ),
    }),
    Type.Null(),
  ]),
  traffic: Type.Object({
    /** Requests answered per second over the last STATUS_TRAFFIC_WINDOW (~10 s). */
    requestsPerSecond: Type.Number(),
    /** p99 response time over the same window (histogram buckets); null with no requests. */
    p99Ms: Nullable(Type.Number()),
  }),
});
export type StatusSnapshot = Static<typeof StatusSnapshotSchema>;
