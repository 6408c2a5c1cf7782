import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { CONFIG_SCHEMA, type ConfigVariableName } from './config-schema.js';
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
}

export type DatabaseConnection = SqliteConnection;

export interface Config {
  port: number;
  host: string;
  serverName: string;
  database: DatabaseConnection;
  /** Absolute path. */
  dataFile: string;
  importOnStart: ImportOnStart;
  adminToken: string | undefined;
  maxUploadBytes: number;
  logLevel: LogLevel;
  nodeEnv: NodeEnv;
  /** Bearer token `/metrics` requires; undefined: open. */
  metricsToken: string | undefined;
}

/** A bad configuration value. Its message is one line naming the variable and what is allowed. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

const DEFAULT_SQLITE_PATH = 'data/users.db';
const SERVER_NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const MIN_TOKEN_LENGTH = 16;

/**
 * Applies defaults, parses and checks every variable, and returns one frozen Config.
 * Relative paths resolve against `cwd`.
 */
export function loadConfig(raw: RawEnv, cwd: string = process.cwd()): Config {
  const value = (name: ConfigVariableName): string | undefined =>
    raw[name] ?? CONFIG_SCHEMA[name].default;
  const fail = (name: ConfigVariableName): never => {
    const shown = 'secret' in CONFIG_SCHEMA[name] ? '(hidden)' : JSON.stringify(raw[name]);
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
  if (!SERVER_NAME_PATTERN.test(serverName)) fail('SERVER_NAME');

  const adminToken = value('ADMIN_TOKEN');
  if (adminToken !== undefined && adminToken.length < MIN_TOKEN_LENGTH) fail('ADMIN_TOKEN');
  const metricsToken = value('METRICS_TOKEN');
  if (metricsToken !== undefined && metricsToken.length < MIN_TOKEN_LENGTH) fail('METRICS_TOKEN');

  const dataFile = value('DATA_FILE') ?? fail('DATA_FILE');
  if (!/\.(csv|json|ndjson|jsonl)$/i.test(dataFile)) fail('DATA_FILE');

  const host = value('HOST') ?? fail('HOST');
  if (/\s/.test(host) || host === '') fail('HOST');

  return Object.freeze({
    port: integer('PORT', 0, 65535),
    host,
    serverName,
    database: parseDatabaseUrl(value('DATABASE_URL'), cwd) ?? fail('DATABASE_URL'),
    dataFile: resolve(cwd, dataFile),
    importOnStart: oneOf('IMPORT_ON_START', IMPORT_ON_START_VALUES),
    adminToken,
    maxUploadBytes: integer('MAX_UPLOAD_BYTES', 1, Number.MAX_SAFE_INTEGER),
    logLevel: oneOf('LOG_LEVEL', LOG_LEVELS),
    nodeEnv: oneOf('NODE_ENV', NODE_ENVS),
    metricsToken,
  });
}

function parseDatabaseUrl(url: string | undefined, cwd: string): DatabaseConnection | undefined {
  if (url === undefined) return { dialect: 'sqlite', path: resolve(cwd, DEFAULT_SQLITE_PATH) };
  const path = /^sqlite:(?:\/\/)?(.+)$/.exec(url)?.[1];
  if (path === undefined || path === ':memory:') return undefined;
  return { dialect: 'sqlite', path: resolve(cwd, path) };
}
