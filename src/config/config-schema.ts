/**
 * Every environment variable the service reads, with its default and what it does. This is the
 * exported config schema: the table in docs/configuration.md, `.env.example` and deploy files are checked against
 * it in tests, so a variable cannot be added, renamed or dropped in one place only.
 */
export interface ConfigVariable {
  /** Default as the text an operator would write; undefined when unset means something. */
  default: string | undefined;
  /** What values are accepted, as shown in the error message for a bad value. */
  allowed: string;
  description: string;
  /** How the value is shown in errors: never (`all`), or with URL passwords masked. */
  redact?: 'all' | 'url-password';
}

const BEARER_TOKEN_ALLOWED =
  'at least 16 characters of letters, digits and - . _ ~ + / (then optional trailing =), as a Bearer token carries them';

export const CONFIG_SCHEMA = {
  PORT: {
    default: '8888',
    allowed: 'an integer from 0 to 65535 (0 picks a free port)',
    description: 'TCP port the HTTP server listens on.',
  },
  HOST: {
    default: '0.0.0.0',
    allowed: 'an IP address or host name to bind',
    description: 'Address the HTTP server binds (0.0.0.0 = every interface, as in a container).',
  },
  SERVER_NAME: {
    default: undefined,
    allowed: '1 to 64 characters of letters, digits, dot, dash or underscore',
    description:
      'Name this instance reports in `/healthcheck` (`all good from <SERVER_NAME>`). Default: the host name.',
  },
  DATABASE_URL: {
    default: undefined,
    allowed:
      'unset (SQLite at ./data/users.db), sqlite:PATH or mysql://USER:PASSWORD@HOST:PORT/DATABASE',
    description:
      'Where the users live. Unset: the embedded SQLite file `./data/users.db`. `mysql://…`: the MySQL/MariaDB primary (all writes).',
    redact: 'url-password',
  },
  DATABASE_REPLICA_URLS: {
    default: undefined,
    allowed: 'a comma-separated list of mysql:// URLs (only with a mysql:// DATABASE_URL)',
    description:
      'Read replicas. Reads go round-robin to healthy ones; none healthy (or none given): the primary.',
    redact: 'url-password',
  },
  DATABASE_PASSWORD_FILE: {
    default: undefined,
    allowed:
      'a path to a readable, non-empty file holding the MySQL password (one trailing newline is dropped), with mysql:// URLs that carry no password',
    description:
      'The MySQL/MariaDB password, read from this file (e.g. a compose secret) for the primary and every replica, so it is neither in the URLs nor in the environment. The URLs then name the user only.',
  },
  DB_POOL_SIZE: {
    default: '10',
    allowed: 'an integer from 1 to 1000',
    description: 'Connections per MySQL server (primary and each replica).',
  },
  DB_CONNECT_TIMEOUT_MS: {
    default: '2000',
    allowed: 'an integer from 100 to 600000',
    description: 'How long to wait for a MySQL connection before the server counts as down.',
  },
  DB_QUERY_TIMEOUT_MS: {
    default: '10000',
    allowed: 'an integer from 100 to 3600000',
    description:
      'Longest a single MySQL query may run; past it the connection is dropped and the query fails. A writer waits 80% of it for the write lock, then answers 409.',
  },
  DB_PROBE_TIMEOUT_MS: {
    default: '1000',
    allowed: 'an integer from 100 to 600000',
    description:
      'Longest one health-probe statement may wait for its answer (the background probes, and the check of a server that left a read unanswered); past it the server counts as down.',
  },
  DB_FIRST_RESPONSE_TIMEOUT_MS: {
    default: '1000',
    allowed: 'an integer from 100 to 600000',
    description:
      'A read on a replica unanswered this long has its server checked (DB_PROBE_TIMEOUT_MS): one that does not answer leaves the read rotation and the read is retried on another server; one that answers is waited for up to DB_QUERY_TIMEOUT_MS. A write waiting for the write lock gets the same check: a silent primary answers 503 then, having written nothing.',
  },
  MAX_CONCURRENT_STREAMS: {
    default: '8',
    allowed: 'an integer from 1 to 1000',
    description:
      'Responses that may stream from a database snapshot at once (bodies over one page of 2,000 rows), per instance. Each holds a connection of its own, outside DB_POOL_SIZE, so slow clients never take the connections ordinary reads and health checks use. One more answers 503 with Retry-After.',
  },
  STREAM_IDLE_TIMEOUT_MS: {
    default: '30000',
    allowed: 'an integer from 100 to 3600000',
    description:
      'A streamed response whose client takes nothing for this long is cut, and its snapshot and connection released.',
  },
  MIGRATE_ON_START: {
    default: 'true',
    allowed: 'true or false',
    description:
      'Apply pending migrations to the primary on start (safe when several instances start at once).',
  },
  MAX_REPLICA_LAG_SECONDS: {
    default: '5',
    allowed: 'an integer from 0 to 86400',
    description: 'A replica further behind than this leaves the read rotation until it catches up.',
  },
  REPLICA_PROBE_INTERVAL_MS: {
    default: '1000',
    allowed: 'an integer from 100 to 600000',
    description:
      'How often every server is probed (read_only: which one takes writes; reachable, replication running, lag).',
  },
  REPLICA_WAIT_MS: {
    default: '5000',
    allowed: 'an integer from 0 to 600000',
    description:
      'After an import commits, how long to wait for every healthy replica to apply it (read-your-writes); a replica that does not leaves the rotation until it has.',
  },
  DATA_FILE: {
    default: 'data/users.csv',
    allowed: 'a path to a .csv, .json or .ndjson file',
    description:
      'File that `POST /addtosql` and the start-up import load (CSV, JSON array or NDJSON).',
  },
  IMPORT_ON_START: {
    default: 'if-empty',
    allowed: 'if-empty or never',
    description:
      '`if-empty`: on start, import DATA_FILE when the users table is empty. `never`: do not.',
  },
  BACKUP_DIR: {
    default: 'data/backups',
    allowed: 'a folder path (created when missing)',
    description:
      'Where `users-api backup` (without `--out`) and `POST /admin/backups` write backups, and what `GET /admin/backups` lists.',
  },
  ADMIN_TOKEN: {
    default: undefined,
    allowed: BEARER_TOKEN_ALLOWED,
    description:
      'Bearer token for admin operations (uploads to `/addtosql`, `mode=append|replace`). Unset: admin operations are accepted from loopback only.',
    redact: 'all',
  },
  ADMIN_TOKEN_FILE: {
    default: undefined,
    allowed:
      'a path to a readable, non-empty file holding ADMIN_TOKEN (one trailing newline is dropped)',
    description:
      'ADMIN_TOKEN read from this file (e.g. a compose secret) instead of the environment. Setting both is an error.',
  },
  MAX_UPLOAD_BYTES: {
    default: '52428800',
    allowed: 'a positive integer number of bytes',
    description: 'Largest upload `POST /addtosql` accepts; larger bodies get 413. Default 50 MB.',
  },
  LOG_LEVEL: {
    default: 'info',
    allowed: 'fatal, error, warn, info, debug, trace or silent',
    description: 'Least severe log level written (JSON lines on stdout).',
  },
  NODE_ENV: {
    default: 'production',
    allowed: 'production, development or test',
    description:
      '`development` with stdout on a terminal: logs are pretty-printed (pino-pretty, a dev dependency). Anything else: JSON lines.',
  },
  API_CACHE_MAX_BYTES: {
    default: '67108864',
    allowed: 'an integer number of bytes from 0 (no cache: every bare /api streams)',
    description:
      'Largest bare `/api` body kept in memory (64 MB); a larger one is served from page files in `API_BODY_DIR`.',
  },
  API_BODY_DIR: {
    default: undefined,
    allowed: 'a folder path (created when missing), or `off`',
    description:
      'Where the bare `/api` body is kept as page files when it is over `API_CACHE_MAX_BYTES` (each instance a folder of its own inside). Unset: `<SQLite file>.api-body` beside the database, or `<temp dir>/users-api-body` on MySQL. `off`: no page files, a larger body streams from the database on every request.',
  },
  API_CACHE_CHECK_MS: {
    default: '250',
    allowed: 'an integer from 0 to 60000 (0: check on every request)',
    description:
      'How often, at most, an instance reads the data version to see whether its cached `/api` body is still current: a write on another instance shows within this time.',
  },
  IDEMPOTENCY_KEY_TTL_SECONDS: {
    default: '86400',
    allowed: 'an integer from 60 to 2592000 (30 days)',
    description:
      'How long an `Idempotency-Key` answers for its write (24 h): a retry within it replays the first answer; after it, the key is new again. Expired keys are deleted by the next write that carries a key.',
  },
  METRICS_TOKEN: {
    default: undefined,
    allowed: BEARER_TOKEN_ALLOWED,
    description:
      'Token `GET /metrics`, the health JSON and the status feed require (Bearer, or the HTTP Basic password). Unset: they are open (keep them off the public frontend).',
    redact: 'all',
  },
  METRICS_TOKEN_FILE: {
    default: undefined,
    allowed:
      'a path to a readable, non-empty file holding METRICS_TOKEN (one trailing newline is dropped)',
    description:
      'METRICS_TOKEN read from this file (e.g. a compose secret) instead of the environment. Setting both is an error.',
  },
  STATUS_INTERVAL_MS: {
    default: '2000',
    allowed: 'an integer from 250 to 600000',
    description:
      'How often `GET /status/events` sends a new status snapshot to each open status page.',
  },
  STATUS_MAX_STREAMS: {
    default: '16',
    allowed: 'an integer from 1 to 1000',
    description:
      'Status pages (`GET /status/events` streams) open at once per instance; one more is refused with 503.',
  },
  HAPROXY_STATS_URL: {
    default: undefined,
    allowed:
      'an http:// or https:// URL of the HAProxy stats page, without user or password (e.g. http://haproxy:8080/)',
    description:
      "HAProxy's stats page: the status page reads its CSV (`<url>;csv`) to show which web server takes traffic. Unset: no HAProxy section.",
    redact: 'url-password',
  },
  HAPROXY_STATS_USER: {
    default: 'admin',
    allowed: '1 to 64 characters, no colon',
    description: "User name for `HAPROXY_STATS_URL` (HAProxy's `STATS_USER`).",
  },
  HAPROXY_STATS_PASSWORD_FILE: {
    default: undefined,
    allowed:
      'a path to a readable, non-empty file holding the HAProxy stats password (one trailing newline is dropped); only with HAPROXY_STATS_URL',
    description:
      'Password for `HAPROXY_STATS_URL`, read from this file (e.g. a compose secret). Unset: the stats page is read without one.',
  },
  HAPROXY_STATS_BACKEND: {
    default: 'webservers',
    allowed: '1 to 64 characters of letters, digits, dot, dash or underscore',
    description:
      'The HAProxy backend whose servers the status page lists (`webservers` in deploy/haproxy/haproxy.cfg).',
  },
  SHUTDOWN_DRAIN_MS: {
    default: '3000',
    allowed: 'an integer from 0 to 600000',
    description:
      'On SIGTERM/SIGINT, how long `/healthcheck` answers 503 `draining` while requests are still served, so the load balancer moves traffic away first (HAProxy here needs about 1 s).',
  },
  SHUTDOWN_TIMEOUT_MS: {
    default: '25000',
    allowed: 'an integer from 1000 to 3600000, more than SHUTDOWN_DRAIN_MS',
    description:
      'Longest a shutdown may take in all: after it, requests still running are cut and the process exits.',
  },
} as const satisfies Record<string, ConfigVariable>;

export type ConfigVariableName = keyof typeof CONFIG_SCHEMA;
