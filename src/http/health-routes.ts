import { Type, type Static } from '@sinclair/typebox';
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import type { Database } from '../db/database.js';
import { probeUsersTable } from '../db/users-repository.js';
import { AppError } from '../errors.js';
import { ProblemSchema, registerMethodNotAllowed } from './problem.js';
import { requireMetricsToken } from './require-metrics-token.js';

const TextSchema = Type.String();

const HealthStatusSchema = Type.Unsafe<'pass' | 'warn' | 'fail'>({
  type: 'string',
  enum: ['pass', 'warn', 'fail'],
});

/** One measurement of one component (draft-inadarei-api-health-check, "checks" values). */
const HealthCheckSchema = Type.Object({
  componentId: Type.Optional(Type.String()),
  componentType: Type.String(),
  observedValue: Type.Optional(Type.Number()),
  observedUnit: Type.Optional(Type.String()),
  /** `database:replicationLag`: where observedValue came from (heartbeat, replica-status, …). */
  observedSource: Type.Optional(Type.String()),
  status: HealthStatusSchema,
  time: Type.String(),
  output: Type.Optional(Type.String()),
  /** `database:primary`: the servers found writable (host:port), listed on a split brain. */
  writers: Type.Optional(Type.Array(Type.String())),
});
type HealthCheck = Static<typeof HealthCheckSchema>;

/**
 * The IETF health-check response (draft-inadarei-api-health-check), `application/health+json`.
 * `checks` keys are `component:measurement`, each an array with one entry per instance:
 * `database:responseTime` times the read path, and on MySQL `database:primary` and
 * `database:replicationLag` (one entry per replica, componentId = host:port) join it.
 */
export const HealthSchema = Type.Object({
  status: HealthStatusSchema,
  version: Type.String(),
  serviceId: Type.String(),
  description: Type.String(),
  checks: Type.Record(Type.String(), Type.Array(HealthCheckSchema)),
});
export type Health = Static<typeof HealthSchema>;

const HEALTH_JSON = 'application/health+json';

/** How long a passing read of the users table answers readiness checks. */
const READINESS_MAX_AGE_MS = 250;
export const TEXT = 'text/plain; charset=utf-8';
const HealthResponseSchema = {
  content: {
    'text/plain': { schema: TextSchema },
    [HEALTH_JSON]: { schema: HealthSchema },
  },
};

export interface HealthDependencies {
  db: Database;
  serverName: string;
  /** The package version. */
  version: string;
  /** Milliseconds since the epoch, now; injected so tests control uptime. */
  now: () => number;
  /** When the process started, in the same clock. */
  startedAt: number;
  /** Users row count; cached by the caller (it may cost a table scan). */
  countUsersRows: () => Promise<number>;
  /** True once the process is shutting down: readiness fails so the balancer moves away. */
  isDraining: () => boolean;
  /** What the start-up steps still wait for, or why they failed; undefined once done. */
  startupState: () => string | undefined;
  readiness: Readiness;
  /** When set, the health JSON (internal host:port names) needs it as a bearer token. */
  metricsToken: string | undefined;
}

/** Whether this instance can read users: the read behind `/healthcheck`. */
export interface Readiness {
  /** The last passing read while it is fresh (READINESS_MAX_AGE_MS): no I/O, no promise. */
  fresh(): HealthCheck | undefined;
  /** Reads the users table (or joins the read in progress); `log` gets a failure's cause. */
  check(log: FastifyBaseLogger): Promise<HealthCheck>;
}

interface ReadinessDependencies {
  db: Database;
  now: () => number;
}

/**
 * A load balancer (or a benchmark) may ask many times a second: a passing read is shared for
 * READINESS_MAX_AGE_MS (on a monotonic clock), and concurrent checks share one read. A failing
 * read is never reused: the next check reads again, so an outage shows at once.
 */
export function createReadiness(deps: ReadinessDependencies): Readiness {
  let lastPass: { check: HealthCheck; at: number } | undefined;
  let pending: Promise<HealthCheck> | undefined;
  return {
    fresh: () =>
      lastPass !== undefined &&
      performance.now() - lastPass.at < READINESS_MAX_AGE_MS &&
      deps.db.corruption() === undefined
        ? lastPass.check
        : undefined,
    check(log) {
      pending ??= checkPrimary(deps, log)
        .then((check) => {
          lastPass = check.status === 'pass' ? { check, at: performance.now() } : undefined;
          return check;
        })
        .finally(() => {
          pending = undefined;
        });
      return pending;
    },
  };
}

/**
 * `/healthcheck` is the readiness check the load balancer polls (the seed's contract): 200
 * `all good from <name>` when this instance can read users, else 503 with a one-line reason.
 * With `Accept: application/health+json` or `?format=json` it answers the IETF health JSON
 * (200 for pass/warn, 503 for fail), which names internal hosts: it needs METRICS_TOKEN when
 * one is set, as `/metrics` does. `/livez` says only that the process answers; it does no
 * I/O, for container health checks.
 */
export function registerHealthRoutes(app: FastifyInstance, deps: HealthDependencies): void {
  const { readiness } = deps;
  const allGood = allGoodFrom(deps.serverName);
  app.get(
    '/healthcheck',
    {
      schema: {
        querystring: Type.Object(
          {
            format: Type.Optional(
              Type.Unsafe<'json' | 'text'>({ type: 'string', enum: ['json', 'text'] }),
            ),
          },
          // Unknown parameters are ignored here, unlike on /api: uptime checkers add
          // cache-busters, and a readiness check must not fail on them.
          { additionalProperties: true },
        ),
        response: {
          200: HealthResponseSchema,
          503: HealthResponseSchema,
          400: ProblemSchema,
          401: ProblemSchema,
        },
      },
    },
    async (request, reply) => {
      reply.header('cache-control', 'no-store');
      const json = wantsJson(request);
      if (json) requireMetricsToken(request, deps.metricsToken);
      if (!json) {
        // Still serving, but no longer ready: no database probe needed to say so.
        if (deps.isDraining()) return reply.code(503).type(TEXT).send(DRAINING);
        const primary = readiness.fresh() ?? (await readiness.check(request.log));
        reply.type(TEXT);
        if (primary.status === 'fail') {
          return reply.code(503).send(primary.output);
        }
        return allGood;
      }
      const health = await readHealth(deps, request.log);
      return reply
        .code(health.status === 'fail' ? 503 : 200)
        .type(HEALTH_JSON)
        .send(health);
    },
  );
  app.get('/livez', { schema: { response: { 200: TextSchema } } }, async (_request, reply) => {
    reply.type(TEXT).header('cache-control', 'no-store');
    return 'ok';
  });
  registerMethodNotAllowed(app, '/healthcheck', ['GET']);
  registerMethodNotAllowed(app, '/livez', ['GET']);
}

const DRAINING = 'draining: this instance is shutting down';

/** The health JSON as `/healthcheck?format=json` answers it (the status page reads it too). */
export async function readHealth(
  deps: HealthDependencies,
  log: FastifyBaseLogger,
): Promise<Health> {
  if (deps.isDraining()) return drainingHealth(deps);
  return describeHealth(deps, deps.readiness.fresh() ?? (await deps.readiness.check(log)));
}

function drainingHealth(deps: HealthDependencies): Health {
  const time = new Date(deps.now()).toISOString();
  return {
    status: 'fail',
    version: deps.version,
    serviceId: deps.serverName,
    description: 'users-api: users directory',
    checks: {
      'process:lifecycle': [{ componentType: 'system', status: 'fail', time, output: DRAINING }],
    },
  };
}

function wantsJson(request: FastifyRequest): boolean {
  const { format } = request.query as { format?: 'json' | 'text' };
  if (format !== undefined) return format === 'json';
  return acceptsHealthJson(request.headers.accept);
}

/** True when `accept` asks for the health JSON rather than the plain-text contract. */
export function acceptsHealthJson(accept: string | undefined): boolean {
  if (accept === undefined) return false;
  // Any accepted range naming health+json with a non-zero quality; the plain text stays the
  // default for everything else (HAProxy, curl, the seed's uptime check).
  return accept.split(',').some((range) => {
    const [type = '', ...params] = range.split(';').map((part) => part.trim().toLowerCase());
    const quality = params.find((param) => param.startsWith('q='));
    return (
      (type === HEALTH_JSON || type === 'application/json') &&
      (quality === undefined || Number(quality.slice(2)) > 0)
    );
  });
}

async function checkPrimary(deps: ReadinessDependencies, log: FastifyBaseLogger) {
  const started = performance.now();
  const failed = (output: string) =>
    ({
      componentId: 'reads',
      componentType: 'datastore',
      status: 'fail',
      time: new Date(deps.now()).toISOString(),
      output,
    }) satisfies HealthCheck;
  // Latched by a read that found a corrupt page: the probe below would pass regardless.
  const corrupt = deps.db.corruption();
  if (corrupt !== undefined) return failed(corrupt);
  try {
    await deps.db.read(probeUsersTable);
  } catch (error) {
    log.warn({ err: error }, 'healthcheck: users table unreadable');
    // Our own errors say why in words safe for anyone (no host names); a driver's may not.
    const why = error instanceof AppError ? error.message : 'cannot read the users table';
    return failed(deps.db.corruption() ?? `database unavailable: ${why}`);
  }
  return {
    componentId: 'reads',
    componentType: 'datastore',
    observedValue: Math.round((performance.now() - started) * 1000) / 1000,
    observedUnit: 'ms',
    status: 'pass',
    time: new Date(deps.now()).toISOString(),
  } satisfies HealthCheck;
}

async function describeHealth(deps: HealthDependencies, primary: HealthCheck): Promise<Health> {
  const time = new Date(deps.now()).toISOString();
  const rows = await readRows(deps, primary, time);
  const uptime: HealthCheck = {
    componentType: 'system',
    observedValue: Math.max(0, Math.round(deps.now() - deps.startedAt) / 1000),
    observedUnit: 's',
    status: 'pass',
    time,
  };
  const replication = describeReplication(deps.db, time);
  const startup = deps.startupState();
  if (startup !== undefined) {
    // Reads may go on meanwhile; what waits is the writes' side (migrations, the import).
    replication['startup:steps'] = [
      { componentType: 'system', status: 'warn', time, output: startup },
    ];
  }
  const statuses = [
    primary.status,
    rows.status,
    ...Object.values(replication)
      .flat()
      .map((c) => c.status),
  ];
  return {
    status: statuses.includes('fail') ? 'fail' : statuses.includes('warn') ? 'warn' : 'pass',
    version: deps.version,
    serviceId: deps.serverName,
    description: 'users-api: users directory',
    checks: {
      'database:responseTime': [primary],
      ...replication,
      'users:rows': [rows],
      uptime: [uptime],
    },
  };
}

/**
 * MySQL only: the primary as the background probe sees it, and each replica's lag. Either one
 * down is a warning, not a failure: reads go on (the `database:responseTime` check decides).
 */
function describeReplication(db: Database, time: string): Record<string, HealthCheck[]> {
  if (db.dialect !== 'mysql') return {};
  const primary = db.primaryState();
  const replicas = db.replicaStates();
  const writers = primary.writers ?? [];
  return {
    'database:primary': [
      {
        componentId: 'primary',
        componentType: 'datastore',
        status: primary.healthy && primary.schemaCurrent !== false ? 'pass' : 'warn',
        time,
        ...(primary.writer !== undefined &&
          primary.writer !== 'primary' && {
            output: `writes go to ${primary.writer}, a promoted replica (the configured primary is read-only or unreachable): point DATABASE_URL at it`,
          }),
        ...(primary.reason !== undefined && { output: `${primary.reason}; writes answer 503` }),
        ...(writers.length > 1 && { writers }),
        ...(primary.healthy &&
          primary.schemaCurrent === false && {
            output: 'its schema is older than this release: run the migrations (users-api migrate)',
          }),
      },
    ],
    ...(replicas.length > 0 && {
      'database:replicationLag': replicas.map((replica) => ({
        componentId: replica.name,
        componentType: 'datastore',
        ...(replica.lagSeconds !== null && {
          observedValue: replica.lagSeconds,
          observedUnit: 's',
          ...(replica.lagSource !== undefined && { observedSource: replica.lagSource }),
        }),
        status: replica.healthy ? ('pass' as const) : ('warn' as const),
        time,
        ...(replica.reason !== undefined && {
          output: `out of the read rotation: ${replica.reason}`,
        }),
      })),
    }),
  };
}

/** An empty table still serves reads (`[]`), so it warns; it does not fail the instance. */
async function readRows(
  deps: HealthDependencies,
  primary: HealthCheck,
  time: string,
): Promise<HealthCheck> {
  const base = { componentType: 'datastore', time } as const;
  if (primary.status === 'fail') {
    return { ...base, status: 'fail', output: 'the database cannot be read' };
  }
  try {
    const count = await deps.countUsersRows();
    return count > 0
      ? { ...base, observedValue: count, observedUnit: 'rows', status: 'pass' }
      : {
          ...base,
          observedValue: 0,
          observedUnit: 'rows',
          status: 'warn',
          output: 'the users table is empty: POST /addtosql or users-api import loads it',
        };
  } catch {
    // The probe just passed, so this is transient: reported as a warning here and counted in
    // users_db_errors_total by the database observer.
    return { ...base, status: 'warn', output: 'cannot count the users' };
  }
}

/** The seed's readiness answer. */
export function allGoodFrom(serverName: string): string {
  return `all good from ${serverName}`;
}
