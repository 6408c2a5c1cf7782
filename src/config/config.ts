import { readFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CONFIG_SCHEMA, type ConfigVariable, type ConfigVariableName } from './config-schema.js';
import type { RawEnv } from './env.js';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const NODE_ENVS = ['production', 'development', 'test'] as const;
export type NodeEnv = (typeof NODE_ENVS)[number];

export const IMPORT_ON_START_VALUES = ['if-empty', 'never'] as const;
export type ImportOnStart = (typeof IMPORT_ON_START_VALUES)[number];

export interface SqliteConnection {
  dialect: 'sqlite';
  /** Absolute path of the database file. */
  path: string;
  /** Snapshot streams held for clients at once (each on a connection of its own). */
  maxConcurrentStreams: number;
}

/** One MySQL/MariaDB server. `name` (host:port) is what logs and metrics show: never the password. */
export interface MysqlTarget {
  name: string;
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
}

export interface MysqlConnection {
  dialect: 'mysql';
  primary: MysqlTarget;
  replicas: MysqlTarget[];
  poolSize: number;
  /** Snapshot streams held for clients at once, on pools of their own (outside poolSize). */
  maxConcurrentStreams: number;
  connectTimeoutMs: number;
  queryTimeoutMs: number;
  /** Longest one probe statement waits for its answer before its server counts as down. */
  probeTimeoutMs: number;
  /** A replica read unanswered this long has its server probed (see answerOrSilence). */
  firstResponseTimeoutMs: number;
  maxReplicaLagSeconds: number;
  replicaProbeIntervalMs: number;
  replicaWaitMs: number;
}

export type DatabaseConnection = SqliteConnection | MysqlConnection;

export interface Config {
  port: number;
  host: string;
  serverName: string;
  database: DatabaseConnection;
  migrateOnStart: boolean;
  /** Absolute path. */
  dataFile: string;
  importOnStart: ImportOnStart;
  /** Absolute path of the backups folder. */
  backupDir: string;
  adminToken: string | undefined;
  maxUploadBytes: number;
  logLevel: LogLevel;
  shutdownDrainMs: number;
  shutdownTimeoutMs: number;
  nodeEnv: NodeEnv;
  /** Bearer token `/metrics` requires; undefined: open. */
  metricsToken: string | undefined;
  /** Largest bare /api body cached in memory; 0 disables the cache. */
  apiCacheMaxBytes: number;
  /** Folder for the bare /api body's page files (absolute); undefined: none (`off`). */
  apiBodyDir: string | undefined;
  /** Least time between two reads of the data version by the /api cache. */
  apiCacheCheckMs: number;
  /** A streamed response whose client takes nothing for this long is cut. */
  streamIdleTimeoutMs: number;
  /** How long an Idempotency-Key record answers for its write. */
  idempotencyKeyTtlMs: number;
  /** The status feed (`/status.json`, `/status/events`). */
  status: StatusConfig;
}

export interface StatusConfig {
  /** Time between two snapshots on a status stream. */
  intervalMs: number;
  /** Status streams open at once. */
  maxStreams: number;
  /** HAProxy's stats page to read; undefined: not configured. */
  haproxy: HaproxyStatsConfig | undefined;
}

export interface HaproxyStatsConfig {
  /** The stats page's URL, without credentials. */
  url: string;
  user: string;
  /** undefined: the page is read without a password. */
  password: string | undefined;
  /** The backend whose servers are listed. */
  backend: string;
}

/** A bad configuration value. Its message is one line naming the variable and what is allowed. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

type SecretFileName =
  | 'ADMIN_TOKEN_FILE'
  | 'METRICS_TOKEN_FILE'
  | 'DATABASE_PASSWORD_FILE'
  | 'HAPROXY_STATS_PASSWORD_FILE';

const DEFAULT_SQLITE_PATH = 'data/users.db';
const SERVER_NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const MIN_TOKEN_LENGTH = 16;
/** RFC 6750's b64token: anything else cannot arrive in `Authorization: Bearer`, so never matches. */
const BEARER_TOKEN_PATTERN = /^[A-Za-z0-9\-._~+/]+=*$/;

/** Reads a secret file (`*_FILE` variables) as UTF-8 text; throws when it cannot. */
export type ReadSecretFile = (path: string) => string;

const readSecretFileSync: ReadSecretFile = (path) => readFileSync(path, 'utf8');

/**
 * Applies defaults, parses and checks every variable, and returns one frozen Config.
 * Relative paths (the `*_FILE` secrets' too) resolve against `cwd`.
 */
export function loadConfig(
  raw: RawEnv,
  cwd: string = process.cwd(),
  readSecretFile: ReadSecretFile = readSecretFileSync,
): Config {
  const value = (name: ConfigVariableName): string | undefined =>
    raw[name] ?? CONFIG_SCHEMA[name].default;
  const fail = (name: ConfigVariableName, text: string = raw[name] ?? ''): never => {
    const variable: ConfigVariable = CONFIG_SCHEMA[name];
    const shown =
      variable.redact === 'all'
        ? '(hidden)'
        : JSON.stringify(variable.redact === 'url-password' ? maskUrlPasswords(text) : text);
    throw new ConfigError(`${name}=${shown} is invalid: expected ${CONFIG_SCHEMA[name].allowed}`);
  };
  const integer = (name: ConfigVariableName, min: number, max: number): number => {
    const text = value(name) ?? '';
    const parsed = /^\d+$/.test(text) ? Number(text) : NaN;
    return Number.isSafeInteger(parsed) && parsed >= min && parsed <= max ? parsed : fail(name);
  };
  const oneOf = <T extends string>(name: ConfigVariableName, allowed: readonly T[]): T => {
    const text = value(name);
    return allowed.find((candidate) => candidate === text) ?? fail(name);
  };

  const serverName = value('SERVER_NAME') ?? hostname();
  // Unset, the host name is the value: the message shows it rather than "".
  if (!SERVER_NAME_PATTERN.test(serverName)) fail('SERVER_NAME', serverName);

  /** The text of a `*_FILE` variable's file, one trailing newline dropped; never shown in errors. */
  const secretFile = (name: SecretFileName): string | undefined => {
    const path = raw[name];
    if (path === undefined) return undefined;
    let text: string;
    try {
      text = readSecretFile(resolve(cwd, path));
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
      throw new ConfigError(`${name}=${JSON.stringify(path)} cannot be read (${code})`, {
        cause: error,
      });
    }
    text = text.replace(/\r?\n$/, '');
    if (text === '') throw new ConfigError(`${name}=${JSON.stringify(path)} is an empty file`);
    return text;
  };
  const token = (name: 'ADMIN_TOKEN' | 'METRICS_TOKEN'): string | undefined => {
    const fileName = `${name}_FILE` as const;
    if (raw[name] !== undefined && raw[fileName] !== undefined) {
      throw new ConfigError(`${name} and ${fileName} are both set: set only one of them`);
    }
    const fromFile = secretFile(fileName);
    const text = fromFile ?? value(name);
    if (text === undefined) return undefined;
    if (text.length >= MIN_TOKEN_LENGTH && BEARER_TOKEN_PATTERN.test(text)) return text;
    if (fromFile === undefined) return fail(name);
    throw new ConfigError(
      `${fileName}=${JSON.stringify(raw[fileName])} holds an invalid token: expected ${CONFIG_SCHEMA[name].allowed}`,
    );
  };
  const adminToken = token('ADMIN_TOKEN');
  const metricsToken = token('METRICS_TOKEN');

  const dataFile = value('DATA_FILE') ?? fail('DATA_FILE');
  if (!/\.(csv|json|ndjson|jsonl)$/i.test(dataFile)) fail('DATA_FILE');

  const host = value('HOST') ?? fail('HOST');
  if (/\s/.test(host) || host === '') fail('HOST');

  const databaseUrl = value('DATABASE_URL');
  const replicaUrls = (value('DATABASE_REPLICA_URLS') ?? '')
    .split(',')
    .map((url) => url.trim())
    .filter((url) => url !== '');
  const maxConcurrentStreams = integer('MAX_CONCURRENT_STREAMS', 1, 1000);
  let database: DatabaseConnection;
  const databasePassword = secretFile('DATABASE_PASSWORD_FILE');
  /** The password from DATABASE_PASSWORD_FILE, into a target whose URL carries none. */
  const withPassword = (target: MysqlTarget, name: ConfigVariableName): MysqlTarget => {
    if (databasePassword === undefined) return target;
    if (target.password !== '') {
      throw new ConfigError(
        `${name} carries a password and DATABASE_PASSWORD_FILE is set: keep the password in the file only`,
      );
    }
    return { ...target, password: databasePassword };
  };
  if (databaseUrl?.startsWith('mysql:')) {
    database = {
      dialect: 'mysql',
      primary: withPassword(parseMysqlUrl(databaseUrl) ?? fail('DATABASE_URL'), 'DATABASE_URL'),
      replicas: replicaUrls.map((url) =>
        withPassword(parseMysqlUrl(url) ?? fail('DATABASE_REPLICA_URLS'), 'DATABASE_REPLICA_URLS'),
      ),
      poolSize: integer('DB_POOL_SIZE', 1, 1000),
      maxConcurrentStreams,
      connectTimeoutMs: integer('DB_CONNECT_TIMEOUT_MS', 100, 600_000),
      queryTimeoutMs: integer('DB_QUERY_TIMEOUT_MS', 100, 3_600_000),
      probeTimeoutMs: integer('DB_PROBE_TIMEOUT_MS', 100, 600_000),
      firstResponseTimeoutMs: integer('DB_FIRST_RESPONSE_TIMEOUT_MS', 100, 600_000),
      maxReplicaLagSeconds: integer('MAX_REPLICA_LAG_SECONDS', 0, 86_400),
      replicaProbeIntervalMs: integer('REPLICA_PROBE_INTERVAL_MS', 100, 600_000),
      replicaWaitMs: integer('REPLICA_WAIT_MS', 0, 600_000),
    };
  } else {
    if (replicaUrls.length > 0) fail('DATABASE_REPLICA_URLS');
    if (databasePassword !== undefined) {
      throw new ConfigError('DATABASE_PASSWORD_FILE is set but DATABASE_URL is not a mysql:// URL');
    }
    const path = parseSqlitePath(databaseUrl, cwd) ?? fail('DATABASE_URL');
    database = { dialect: 'sqlite', path, maxConcurrentStreams };
  }

  const haproxyStatsUrl = value('HAPROXY_STATS_URL');
  const haproxyStatsPassword = secretFile('HAPROXY_STATS_PASSWORD_FILE');
  if (haproxyStatsUrl === undefined && haproxyStatsPassword !== undefined) {
    throw new ConfigError('HAPROXY_STATS_PASSWORD_FILE is set but HAPROXY_STATS_URL is not');
  }
  const haproxyUser = value('HAPROXY_STATS_USER') ?? '';
  if (!/^[^:\s]{1,64}$/.test(haproxyUser)) fail('HAPROXY_STATS_USER');
  const haproxyBackend = value('HAPROXY_STATS_BACKEND') ?? '';
  if (!SERVER_NAME_PATTERN.test(haproxyBackend)) fail('HAPROXY_STATS_BACKEND');
  const status: StatusConfig = {
    intervalMs: integer('STATUS_INTERVAL_MS', 250, 600_000),
    maxStreams: integer('STATUS_MAX_STREAMS', 1, 1000),
    haproxy:
      haproxyStatsUrl === undefined
        ? undefined
        : {
            url: parseHttpUrl(haproxyStatsUrl) ?? fail('HAPROXY_STATS_URL'),
            user: haproxyUser,
            password: haproxyStatsPassword,
            backend: haproxyBackend,
          },
  };

  const shutdownDrainMs = integer('SHUTDOWN_DRAIN_MS', 0, 600_000);
  const shutdownTimeoutMs = integer('SHUTDOWN_TIMEOUT_MS', 1000, 3_600_000);
  if (shutdownTimeoutMs <= shutdownDrainMs) fail('SHUTDOWN_TIMEOUT_MS');

  return Object.freeze({
    shutdownDrainMs,
    shutdownTimeoutMs,
    port: integer('PORT', 0, 65535),
    host,
    serverName,
    database,
    migrateOnStart: oneOf('MIGRATE_ON_START', ['true', 'false']) === 'true',
    dataFile: resolve(cwd, dataFile),
    importOnStart: oneOf('IMPORT_ON_START', IMPORT_ON_START_VALUES),
    backupDir: resolve(cwd, value('BACKUP_DIR') ?? fail('BACKUP_DIR')),
    adminToken,
    maxUploadBytes: integer('MAX_UPLOAD_BYTES', 1, Number.MAX_SAFE_INTEGER),
    logLevel: oneOf('LOG_LEVEL', LOG_LEVELS),
    nodeEnv: oneOf('NODE_ENV', NODE_ENVS),
    metricsToken,
    apiCacheMaxBytes: integer('API_CACHE_MAX_BYTES', 0, Number.MAX_SAFE_INTEGER),
    apiCacheCheckMs: integer('API_CACHE_CHECK_MS', 0, 60_000),
    apiBodyDir: apiBodyDirOf(value('API_BODY_DIR'), database, cwd),
    streamIdleTimeoutMs: integer('STREAM_IDLE_TIMEOUT_MS', 100, 3_600_000),
    idempotencyKeyTtlMs: integer('IDEMPOTENCY_KEY_TTL_SECONDS', 60, 2_592_000) * 1000,
    status,
  });
}

/** An http(s) URL without credentials (the password goes in a file), query or fragment. */
function parseHttpUrl(text: string): string | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return undefined;
  }
  const plain = url.username === '' && url.password === '' && url.search === '' && url.hash === '';
  return (url.protocol === 'http:' || url.protocol === 'https:') && plain ? url.href : undefined;
}

/** API_BODY_DIR: the folder given, `off`, or beside the SQLite file / in the temp dir. */
function apiBodyDirOf(
  text: string | undefined,
  database: DatabaseConnection,
  cwd: string,
): string | undefined {
  if (text === 'off') return undefined;
  if (text !== undefined) return resolve(cwd, text);
  return database.dialect === 'sqlite'
    ? `${database.path}.api-body`
    : join(tmpdir(), 'users-api-body');
}

/** `text` with the password of every `scheme://user:password@` in it replaced by `***`. */
export function maskUrlPasswords(text: string): string {
  return text.replace(/(\/\/[^:/@]*:)[^@]*@/g, '$1***@');
}

/**
 * The database as prompts and result lines name it: `sqlite:PATH`, or the primary's
 * `mysql://` URL with its password masked.
 */
export function describeDatabase(connection: DatabaseConnection): string {
  if (connection.dialect === 'sqlite') return `sqlite:${connection.path}`;
  const { user, password, name, database } = connection.primary;
  const credentials =
    encodeURIComponent(user) + (password === '' ? '' : `:${encodeURIComponent(password)}`);
  return maskUrlPasswords(`mysql://${credentials}@${name}/${encodeURIComponent(database)}`);
}

function parseSqlitePath(url: string | undefined, cwd: string): string | undefined {
  if (url === undefined) return resolve(cwd, DEFAULT_SQLITE_PATH);
  const path = /^sqlite:(?:\/\/)?(.+)$/.exec(url)?.[1];
  if (path === undefined || path === ':memory:') return undefined;
  return resolve(cwd, path);
}

function parseMysqlUrl(text: string): MysqlTarget | undefined {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return undefined;
  }
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (url.protocol !== 'mysql:' || url.hostname === '' || database === '' || url.username === '') {
    return undefined;
  }
  const port = url.port === '' ? 3306 : Number(url.port);
  return {
    name: `${url.hostname}:${port}`,
    host: url.hostname,
    port,
    user: decodeURIComponent(url.username),
    password: decodeURIComponent(url.password),
    database,
  };
}
