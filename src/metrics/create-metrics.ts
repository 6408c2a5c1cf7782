import {
  Counter,
  Gauge,
  Histogram,
  Registry,
  collectDefaultMetrics,
  type Metric,
} from 'prom-client';
import type { LagSource } from '../db/database.js';
import type { DatabaseObserver } from '../db/database-observer.js';
import type { ImportObserver, ImportOutcome } from '../importer/import-users.js';

/** Every LagSource, so the one in use reads 1 and the others 0. */
const LAG_SOURCES: readonly LagSource[] = ['heartbeat', 'replica-status', 'last-heartbeat'];

/** Labels of one finished HTTP request. `route` is the route template, never the raw URL. */
export interface HttpRequestLabels {
  method: string;
  route: string;
  status: number;
}

/**
 * The service's metrics as a small typed object: modules are given the part they report to
 * (`db`, `importFinished`, …) and never import prom-client. Every name and label is listed in
 * docs/observability.md; alert rules in deploy/prometheus/alerts.yml depend on them, so renaming one is a
 * breaking change.
 */
export interface Metrics {
  /** Content-Type of `render()`'s text (Prometheus exposition format 0.0.4). */
  readonly contentType: string;
  /** The exposition text of every metric; collects the users row count first. */
  render(): Promise<string>;
  requestStarted(): void;
  /** Pairs with `requestStarted`; `labels` is undefined when the client went away first. */
  requestFinished(labels: HttpRequestLabels | undefined, seconds: number): void;
  readonly db: DatabaseObserver;
  readonly importFinished: ImportObserver;
  /** A backup taken by this process finished and was verified. */
  backupSucceeded(at: Date): void;
  /** A streamed response was cut because its client took nothing for STREAM_IDLE_TIMEOUT_MS. */
  streamCut(): void;
  /**
   * Every request `http_request_duration_seconds` counted so far, but those of `skipRoutes`, as
   * counts per bucket of REQUEST_DURATION_BUCKETS (the last entry: over the largest bound). The
   * status page takes rates and quantiles from two of these, as Prometheus does from two scrapes.
   */
  requestDurationTotals(skipRoutes?: ReadonlySet<string>): RequestDurationTotals;
  /** The last import `importFinished` was told of; undefined before the first. */
  lastImport(): { at: Date; outcome: ImportOutcome; rows: number } | undefined;
}

/** See Metrics.requestDurationTotals. */
export interface RequestDurationTotals {
  count: number;
  /** Requests per bucket (not cumulative), one more entry than REQUEST_DURATION_BUCKETS. */
  buckets: number[];
}

export interface MetricsOptions {
  /**
   * Reads the users row count when `/metrics` is scraped. Pass a cached reader: a scrape must
   * not cost a table scan each time. A failed read keeps the last value (the failure shows
   * in `users_db_errors_total`).
   */
  countUsersRows?: () => Promise<number>;
  /** Node.js process metrics (CPU, memory, event loop, GC). Default true. */
  processMetrics?: boolean;
  /**
   * Unix seconds of the last verified backup another process recorded (the backup scheduler's
   * status file in BACKUP_DIR), read on scrape; the gauge shows the later of it and this
   * process's own backups. A failed read keeps the last value.
   */
  lastBackupSuccess?: () => Promise<number | undefined>;
  /**
   * MAX_REPLICA_LAG_SECONDS when the database has read replicas (leave it out otherwise): the
   * lag above which the replica router takes a replica out of reads. Exported as
   * `users_db_replica_max_lag_seconds` so the ReplicaLagHigh alert compares each replica with
   * the limit this instance really applies instead of a copy of it in alerts.yml.
   */
  replicaMaxLagSeconds?: number;
  /** True on MySQL, whose primary is probed: `users_db_primary_reachable` is exported then only. */
  probesPrimary?: boolean;
}

/** Latency buckets in seconds: 1 ms … 10 s, dense around the 500 ms p99 alert threshold. */
export const REQUEST_DURATION_BUCKETS: readonly number[] = [
  0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10,
];
const DB_BUCKETS = [0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** Builds a fresh registry with every metric the service exports (one per app instance). */
export function createMetrics(options: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  const registers = [registry];

  const requestDuration = new RequestDurationHistogram();
  registry.registerMetric(requestDuration as unknown as Metric);
  // Kept as a number and read on scrape: requests change it twice each, scrapes are rare.
  let requestsInFlight = 0;
  new Gauge({
    name: 'http_requests_in_flight',
    help: 'Requests received and not yet answered.',
    registers,
    collect() {
      this.set(requestsInFlight);
    },
  });

  const replicaHealthy = new Gauge({
    name: 'users_db_replica_healthy',
    help: '1 when the replica answers and replicates with lag under the limit, else 0.',
    labelNames: ['replica'] as const,
    registers,
  });
  const replicaLag = new Gauge({
    name: 'users_db_replica_lag_seconds',
    help: 'Replication lag of the replica: from the heartbeat when one is written, else Seconds_Behind_Master (see users_db_replica_lag_source).',
    labelNames: ['replica'] as const,
    registers,
  });
  const replicaLagSource = new Gauge({
    name: 'users_db_replica_lag_source',
    help: '1 for where the replica lag figure comes from now: heartbeat, replica_status, or last_heartbeat (kept while nobody can write the heartbeat).',
    labelNames: ['replica', 'source'] as const,
    registers,
  });
  if (options.replicaMaxLagSeconds !== undefined) {
    new Gauge({
      name: 'users_db_replica_max_lag_seconds',
      help: 'Lag above which a replica leaves the read rotation (MAX_REPLICA_LAG_SECONDS).',
      registers,
    }).set(options.replicaMaxLagSeconds);
  }
  const primaryReachable = options.probesPrimary
    ? new Gauge({
        name: 'users_db_primary_reachable',
        help: '1 when the last probe of the MySQL primary succeeded (writes possible), else 0.',
        registers,
      })
    : undefined;
  const writableServers = options.probesPrimary
    ? new Gauge({
        name: 'users_db_writable_servers',
        help: 'Configured MySQL servers whose last probe found them writable (read_only=OFF): 1 is healthy, 0 refuses writes, 2 or more is a split brain (writes refused).',
        registers,
      })
    : undefined;
  const readsRoutedToPrimary = new Counter({
    name: 'users_db_reads_routed_to_primary_total',
    help: 'Reads sent to the primary because no replica was healthy.',
    registers,
  });
  const queryDuration = new Histogram({
    name: 'users_db_query_duration_seconds',
    help: 'Database query time, by target (primary or replica name) and operation (read|write).',
    labelNames: ['target', 'operation'] as const,
    buckets: DB_BUCKETS,
    registers,
  });
  const dbErrors = new Counter({
    name: 'users_db_errors_total',
    help: 'Queries that failed, by target (primary or replica name).',
    labelNames: ['target'] as const,
    registers,
  });
  const poolInUse = new Gauge({
    name: 'users_db_pool_connections_in_use',
    help: 'Connections checked out of the pool, by target.',
    labelNames: ['target'] as const,
    registers,
  });

  const streamsInProgress = new Gauge({
    name: 'users_streams_in_progress',
    help: 'Responses streaming from a database snapshot now (at most MAX_CONCURRENT_STREAMS).',
    registers,
  });
  const streamsRefused = new Counter({
    name: 'users_streams_refused_total',
    help: 'Streamed responses refused with 503 because MAX_CONCURRENT_STREAMS were running.',
    registers,
  });
  const streamsCut = new Counter({
    name: 'users_streams_cut_total',
    help: 'Streamed responses cut because the client took nothing for STREAM_IDLE_TIMEOUT_MS.',
    registers,
  });

  const countUsersRows = options.countUsersRows;
  new Gauge({
    name: 'users_rows',
    help: 'Rows in the users table (read on scrape, cached for a few seconds).',
    registers,
    async collect() {
      if (countUsersRows === undefined) return;
      try {
        this.set(await countUsersRows());
      } catch {
        // Keep the last value: the failure is counted by the database observer, and a
        // scrape must not fail because one collector did.
      }
    },
  });

  const imports = new Counter({
    name: 'users_imports_total',
    help: 'Imports by result: imported, skipped (table not empty), rejected (bad input), failed.',
    labelNames: ['result'] as const,
    registers,
  });
  const importedRows = new Counter({
    name: 'users_imported_rows_total',
    help: 'Rows written by successful imports.',
    registers,
  });
  const OUTCOMES: readonly ImportOutcome[] = ['imported', 'skipped', 'rejected', 'failed'];
  for (const result of OUTCOMES) imports.inc({ result }, 0);

  let lastImport: ReturnType<Metrics['lastImport']>;

  const lastBackupSuccess = options.lastBackupSuccess;
  let backupSeconds = 0;
  const backupLastSuccess = new Gauge({
    name: 'users_backup_last_success_timestamp_seconds',
    help: 'Unix time of the last verified backup (this process or the BACKUP_DIR status file); 0 until one.',
    registers,
    async collect() {
      if (lastBackupSuccess === undefined) return;
      try {
        const recorded = await lastBackupSuccess();
        if (recorded !== undefined && recorded > backupSeconds) {
          backupSeconds = recorded;
          this.set(recorded);
        }
      } catch {
        // Keep the last value: an unreadable status file must not fail the scrape, and the
        // BackupTooOld alert fires on the stale value anyway.
      }
    },
  });

  return {
    contentType: registry.contentType,
    render: () => registry.metrics(),
    requestStarted() {
      requestsInFlight += 1;
    },
    requestFinished(labels, seconds) {
      requestsInFlight -= 1;
      if (labels === undefined) return;
      requestDuration.observe(labels, seconds);
    },
    db: {
      queryFinished: (target, operation, seconds) =>
        queryDuration.observe({ target, operation }, seconds),
      queryFailed: (target) => dbErrors.inc({ target }),
      replicaChecked(replica, healthy, lagSeconds, lagSource) {
        replicaHealthy.set({ replica }, healthy ? 1 : 0);
        if (lagSeconds === undefined) replicaLag.remove({ replica });
        else replicaLag.set({ replica }, lagSeconds);
        for (const source of LAG_SOURCES) {
          replicaLagSource.set(
            { replica, source: source.replace('-', '_') },
            source === lagSource ? 1 : 0,
          );
        }
      },
      primaryChecked: (reachable) => primaryReachable?.set(reachable ? 1 : 0),
      writableServersChecked: (count) => writableServers?.set(count),
      readRoutedToPrimary: () => readsRoutedToPrimary.inc(),
      poolConnectionsInUse: (target, count) => poolInUse.set({ target }, count),
      streamsInUse: (count) => streamsInProgress.set(count),
      streamRefused: () => streamsRefused.inc(),
    },
    importFinished(outcome, rows) {
      lastImport = { at: new Date(), outcome, rows };
      imports.inc({ result: outcome });
      if (rows > 0) importedRows.inc(rows);
    },
    backupSucceeded(at) {
      backupSeconds = Math.max(backupSeconds, at.getTime() / 1000);
      backupLastSuccess.set(backupSeconds);
    },
    streamCut: () => streamsCut.inc(),
    requestDurationTotals: (skipRoutes) => requestDuration.totals(skipRoutes),
    lastImport: () => lastImport,
  };
}

/** One label set's counts: per bucket (not cumulative), then the sum and the count. */
interface DurationCounts {
  labels: { method: string; route: string; status: string };
  buckets: Float64Array;
  sum: number;
  count: number;
}

/**
 * `http_request_duration_seconds`, counted here and handed to prom-client on scrape: every
 * request observes it, and prom-client's observe() validates, copies and joins the labels each
 * time (~0.5 us, a twentieth of a cached /healthcheck answer). The exposition is prom-client's
 * own (Registry formats what get() returns), so the series are the same as a Histogram's.
 */
class RequestDurationHistogram {
  readonly name = 'http_request_duration_seconds';
  readonly help =
    'Time from request received to response sent, by method, route template and status.';
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  /** route → status → method: no key string is built per request (route names are constants). */
  readonly #counts = new Map<string, Map<number, Map<string, DurationCounts>>>();

  observe(labels: HttpRequestLabels, seconds: number): void {
    let byStatus = this.#counts.get(labels.route);
    if (byStatus === undefined)
      this.#counts.set(labels.route, (byStatus = new Map<number, Map<string, DurationCounts>>()));
    let byMethod = byStatus.get(labels.status);
    if (byMethod === undefined)
      byStatus.set(labels.status, (byMethod = new Map<string, DurationCounts>()));
    let counts = byMethod.get(labels.method);
    if (counts === undefined) {
      counts = {
        labels: { method: labels.method, route: labels.route, status: String(labels.status) },
        buckets: new Float64Array(REQUEST_DURATION_BUCKETS.length),
        sum: 0,
        count: 0,
      };
      byMethod.set(labels.method, counts);
    }
    for (let bucket = 0; bucket < REQUEST_DURATION_BUCKETS.length; bucket += 1) {
      if (seconds <= REQUEST_DURATION_BUCKETS[bucket]!) {
        counts.buckets[bucket]! += 1;
        break;
      }
    }
    counts.sum += seconds;
    counts.count += 1;
  }

  totals(skipRoutes?: ReadonlySet<string>): RequestDurationTotals {
    const buckets = new Array<number>(REQUEST_DURATION_BUCKETS.length + 1).fill(0);
    let count = 0;
    for (const [route, byStatus] of this.#counts) {
      if (skipRoutes?.has(route) === true) continue;
      for (const byMethod of byStatus.values()) {
        for (const counts of byMethod.values()) {
          let counted = 0;
          counts.buckets.forEach((inBucket, index) => {
            buckets[index]! += inBucket;
            counted += inBucket;
          });
          // observe() counts a request over the largest bound in no bucket: the last entry here.
          buckets[REQUEST_DURATION_BUCKETS.length]! += counts.count - counted;
          count += counts.count;
        }
      }
    }
    return { count, buckets };
  }

  get() {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] =
      [];
    const all = [...this.#counts.values()].flatMap((byStatus) =>
      [...byStatus.values()].flatMap((byMethod) => [...byMethod.values()]),
    );
    for (const { labels, buckets, sum, count } of all) {
      let cumulative = 0;
      REQUEST_DURATION_BUCKETS.forEach((bound, index) => {
        cumulative += buckets[index]!;
        values.push({
          labels: { ...labels, le: bound },
          value: cumulative,
          metricName: `${this.name}_bucket`,
        });
      });
      values.push({
        labels: { ...labels, le: '+Inf' },
        value: count,
        metricName: `${this.name}_bucket`,
      });
      values.push({ labels, value: sum, metricName: `${this.name}_sum` });
      values.push({ labels, value: count, metricName: `${this.name}_count` });
    }
    return Promise.resolve({
      name: this.name,
      help: this.help,
      type: this.type,
      values,
      aggregator: this.aggregator,
    });
  }

  reset(): void {
    this.#counts.clear();
  }
}
