import { PassThrough } from 'node:stream';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { AppDependencies } from '../app.js';
import { readBackupRecord } from '../backup/backup-status.js';
import { readDataVersion } from '../db/users-repository.js';
import { AppError } from '../errors.js';
import { REQUEST_DURATION_BUCKETS } from '../metrics/create-metrics.js';
import { createStatusBroadcast } from '../monitor/status-broadcast.js';
import { createHaproxyStatsReader } from '../monitor/status-haproxy.js';
import { createStatusSnapshot } from '../monitor/status-snapshot.js';
import { StatusSnapshotSchema } from '../monitor/status-snapshot-schema.js';
import { createTrafficMeter } from '../monitor/status-traffic.js';
import { cacheReader } from '../metrics/cache-reader.js';
import { readHealth, type Readiness } from './health-routes.js';
import { ProblemSchema, registerMethodNotAllowed } from './problem.js';
import { requireMetricsToken } from './require-metrics-token.js';

export interface StatusDependencies extends AppDependencies {
  readiness: Readiness;
  isDraining: () => boolean;
}

/** The browser prompts for a login on this challenge; the realm names what it is for. */
const CHALLENGE = 'Basic realm="users-api status", charset="UTF-8"';
/** Comment lines on an idle stream, under HAProxy's 30 s `timeout client`/`timeout server`. */
const HEARTBEAT_MS = 15_000;
/** A client that has not taken this much is not reading: its stream is ended. */
const MAX_UNREAD_BYTES = 1024 * 1024;
/** The window requests/s and p99 cover. */
const TRAFFIC_WINDOW_MS = 10_000;
/** How long one HAProxy stats reading serves: many pages, one read per second at most. */
const HAPROXY_READ_MAX_AGE_MS = 1000;

/**
 * Whether `url` (a route template) belongs to the status page: `/status`, `/status.json` and
 * everything under `/status/` (the page's assets, the event stream).
 */
export function isStatusRoute(url: string | undefined): boolean {
  return url === '/status' || url === '/status.json' || url?.startsWith('/status/') === true;
}

/**
 * `GET /status.json` (one status snapshot) and `GET /status/events` (server-sent events: an
 * `event: status` with a snapshot every STATUS_INTERVAL_MS, at most STATUS_MAX_STREAMS open),
 * and the guard that every status route in this Fastify context passes, the page and its
 * assets too: METRICS_TOKEN as Bearer or as the password of HTTP Basic, with a Basic challenge
 * on 401 so a browser asks for it.
 */
export function registerStatusRoutes(app: FastifyInstance, deps: StatusDependencies): void {
  const { config, db, metrics } = deps;
  app.addHook('onRequest', (request, reply, done) => {
    if (!isStatusRoute(request.routeOptions.url)) return done();
    try {
      requireMetricsToken(request, config.metricsToken);
    } catch (error) {
      reply.header('www-authenticate', CHALLENGE);
      return done(error as Error);
    }
    done();
  });

  const haproxy = config.status.haproxy;
  const snapshot = createStatusSnapshot({
    serverName: config.serverName,
    version: deps.version,
    now: deps.now,
    startedAt: deps.startedAt,
    servers:
      config.database.dialect === 'mysql'
        ? [config.database.primary, ...config.database.replicas].map((target, index) => ({
            label: index === 0 ? 'primary' : `replica ${index}`,
            name: target.name,
            host: target.host,
          }))
        : undefined,
    primaryState: () => db.primaryState(),
    replicaStates: () => db.replicaStates(),
    health: () =>
      readHealth(
        {
          db,
          serverName: config.serverName,
          version: deps.version,
          now: deps.now,
          startedAt: deps.startedAt,
          countUsersRows: deps.countUsersRows,
          isDraining: deps.isDraining,
          startupState: deps.startupState ?? (() => undefined),
          readiness: deps.readiness,
          metricsToken: config.metricsToken,
        },
        deps.logger,
      ),
    countUsersRows: deps.countUsersRows,
    readDataVersion: () => db.read(readDataVersion),
    lastImport: () => {
      const last = metrics.lastImport();
      return last === undefined ? null : { ...last, at: last.at.toISOString() };
    },
    lastBackup: () => readBackupRecord(config.backupDir),
    haproxy:
      haproxy === undefined
        ? undefined
        : cacheReader(createHaproxyStatsReader({ ...haproxy, timeoutMs: 1000 }), {
            maxAgeMs: HAPROXY_READ_MAX_AGE_MS,
            now: () => performance.now(),
          }),
    traffic: createTrafficMeter({
      // An open event stream finishes when its page closes: its minutes are not a latency.
      totals: () => metrics.requestDurationTotals(new Set(['/status/events'])),
      bounds: REQUEST_DURATION_BUCKETS,
      windowMs: TRAFFIC_WINDOW_MS,
    }),
  });
  const broadcast = createStatusBroadcast({
    snapshot,
    intervalMs: config.status.intervalMs,
    maxListeners: config.status.maxStreams,
    failed: (error) => deps.logger.warn({ err: error }, 'status snapshot failed'),
  });
  // Open streams never end on their own: app.close() would wait for them until it cuts them.
  app.addHook('preClose', (done) => {
    broadcast.close();
    done();
  });

  const describedProblems = { 401: ProblemSchema, 405: ProblemSchema };
  app.get(
    '/status.json',
    {
      schema: {
        summary: 'One status snapshot of this instance (what the status page shows)',
        description:
          'Databases (labels, never host names), data version and rows, the last import and backup, what is wrong now, HAProxy (with HAPROXY_STATS_URL) and traffic. Needs METRICS_TOKEN when one is set, as Bearer or as the HTTP Basic password.',
        querystring: Type.Object({}, { additionalProperties: false }),
        response: { 200: StatusSnapshotSchema, 400: ProblemSchema, ...describedProblems },
      },
    },
    async (_request, reply) => {
      reply.header('cache-control', 'no-store');
      return snapshot();
    },
  );

  app.get(
    '/status/events',
    {
      schema: {
        summary: 'Status snapshots as server-sent events',
        description: `text/event-stream: \`event: status\` whose data is the /status.json snapshot, every STATUS_INTERVAL_MS (first one at once), and comment lines every ${HEARTBEAT_MS / 1000} s. At most STATUS_MAX_STREAMS open per instance: one more is refused with 503 (ERR_STATUS_STREAMS_BUSY). Needs METRICS_TOKEN when one is set, as Bearer or as the HTTP Basic password.`,
        querystring: Type.Object({}, { additionalProperties: false }),
        response: {
          200: { content: { 'text/event-stream': { schema: Type.String() } } },
          400: ProblemSchema,
          503: ProblemSchema,
          ...describedProblems,
        },
      },
    },
    (_request, reply) => {
      const stream = new PassThrough();
      const write = (text: string) => {
        if (stream.writableLength > MAX_UNREAD_BYTES) stream.end();
        else if (!stream.writableEnded) stream.write(text);
      };
      const unsubscribe = broadcast.subscribe({
        send: (status) => write(`event: status\ndata: ${JSON.stringify(status)}\n\n`),
        end: () => stream.end(),
      });
      if (unsubscribe === undefined) {
        throw new AppError(
          'ERR_STATUS_STREAMS_BUSY',
          `${config.status.maxStreams} status streams are open on this instance (STATUS_MAX_STREAMS): close a status page, or try again later`,
          { retryAfterSeconds: 5 },
        );
      }
      const heartbeat = setInterval(() => write(': keep-alive\n\n'), HEARTBEAT_MS);
      stream.on('close', () => {
        clearInterval(heartbeat);
        unsubscribe();
      });
      // The client went away (or the response ended): the stream and its subscription go too.
      reply.raw.on('close', () => stream.destroy());
      // `retry:` tells EventSource how long to wait before reconnecting after a drop.
      stream.write(`retry: ${Math.max(1000, config.status.intervalMs)}\n\n`);
      return sendEvents(reply, stream);
    },
  );
  registerMethodNotAllowed(app, '/status.json', ['GET']);
  registerMethodNotAllowed(app, '/status/events', ['GET']);
}

function sendEvents(reply: FastifyReply, stream: PassThrough) {
  return reply
    .header('content-type', 'text/event-stream; charset=utf-8')
    .header('cache-control', 'no-store')
    .send(stream);
}
