/**
 * Every environment variable the service reads, with its default and what it does. This is the
 * exported config schema: the README table, `.env.example` and deploy files are checked against
 * it in tests, so a variable cannot be added, renamed or dropped in one place only.
 */
export interface ConfigVariable {
  /** Default as the text an operator would write; undefined when unset means something. */
  default: string | undefined;
  /** What values are accepted, as shown in the error message for a bad value. */
  allowed: string;
  description: string;
  /** Never logged or echoed back. */
  secret?: boolean;
}

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
    allowed: 'unset (SQLite at ./data/users.db) or sqlite:PATH',
    description:
      'Where the users live. Unset: the embedded SQLite file `./data/users.db` (created on start).',
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
  ADMIN_TOKEN: {
    default: undefined,
    allowed: 'at least 16 characters',
    description:
      'Bearer token for admin operations (uploads to `/addtosql`, `mode=append|replace`). Unset: admin operations are accepted from loopback only.',
    secret: true,
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
  METRICS_TOKEN: {
    default: undefined,
    allowed: 'at least 16 characters',
    description:
      'Bearer token `GET /metrics` requires. Unset: `/metrics` is open (keep it off the public frontend).',
    secret: true,
  },
} as const satisfies Record<string, ConfigVariable>;

export type ConfigVariableName = keyof typeof CONFIG_SCHEMA;
