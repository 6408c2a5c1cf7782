import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { CONFIG_SCHEMA } from '../../src/config/config-schema.js';
import { ConfigError, loadConfig } from '../../src/config/config.js';
import { readEnv } from '../../src/config/env.js';
import { REPO_ROOT } from '../helpers/paths.js';

const CWD = '/srv/users-api';

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    assert.deepEqual(loadConfig({}, CWD), {
      port: 8888,
      host: '0.0.0.0',
      serverName: hostname(),
      database: {
        dialect: 'sqlite',
        path: '/srv/users-api/data/users.db',
        maxConcurrentStreams: 8,
      },
      migrateOnStart: true,
      dataFile: '/srv/users-api/data/users.csv',
      importOnStart: 'if-empty',
      backupDir: '/srv/users-api/data/backups',
      adminToken: undefined,
      maxUploadBytes: 52_428_800,
      logLevel: 'info',
      nodeEnv: 'production',
      metricsToken: undefined,
      shutdownDrainMs: 3000,
      shutdownTimeoutMs: 25_000,
      apiCacheMaxBytes: 67_108_864,
      apiCacheCheckMs: 250,
      apiBodyDir: '/srv/users-api/data/users.db.api-body',
      streamIdleTimeoutMs: 30_000,
      idempotencyKeyTtlMs: 86_400_000,
      status: { intervalMs: 2000, maxStreams: 16, haproxy: undefined },
    });
  });

  it('reads the /api cache settings; 0 turns the cache off or checks on every request', () => {
    const config = loadConfig({ API_CACHE_MAX_BYTES: '0', API_CACHE_CHECK_MS: '0' }, CWD);
    assert.equal(config.apiCacheMaxBytes, 0);
    assert.equal(config.apiCacheCheckMs, 0);
    assert.throws(() => loadConfig({ API_CACHE_CHECK_MS: '60001' }, CWD), {
      message:
        'API_CACHE_CHECK_MS="60001" is invalid: expected an integer from 0 to 60000 (0: check on every request)',
    });
    assert.throws(
      () => loadConfig({ API_CACHE_MAX_BYTES: '64MB' }, CWD),
      /^ConfigError: API_CACHE_MAX_BYTES=/,
    );
  });

  it('returns a frozen object', () => {
    assert.ok(Object.isFrozen(loadConfig({}, CWD)));
  });

  it('reads sqlite: URLs, relative and absolute', () => {
    assert.equal(
      (loadConfig({ DATABASE_URL: 'sqlite:db/x.db' }, CWD).database as { path: string }).path,
      '/srv/users-api/db/x.db',
    );
    assert.equal(
      (loadConfig({ DATABASE_URL: 'sqlite:///tmp/x.db' }, CWD).database as { path: string }).path,
      '/tmp/x.db',
    );
  });

  it('reads a MySQL primary with replicas and the pool, timeout and replica settings', () => {
    const config = loadConfig(
      {
        DATABASE_URL: 'mysql://app:s%40cret@db-primary:3307/users',
        DATABASE_REPLICA_URLS:
          'mysql://app:pw@db-replica/users, mysql://app:pw@10.0.0.9:3306/users',
        DB_POOL_SIZE: '4',
        MAX_REPLICA_LAG_SECONDS: '2',
        MIGRATE_ON_START: 'false',
      },
      CWD,
    );
    assert.equal(config.migrateOnStart, false);
    assert.deepEqual(config.database, {
      dialect: 'mysql',
      primary: {
        name: 'db-primary:3307',
        host: 'db-primary',
        port: 3307,
        user: 'app',
        password: 's@cret',
        database: 'users',
      },
      replicas: [
        {
          name: 'db-replica:3306',
          host: 'db-replica',
          port: 3306,
          user: 'app',
          password: 'pw',
          database: 'users',
        },
        {
          name: '10.0.0.9:3306',
          host: '10.0.0.9',
          port: 3306,
          user: 'app',
          password: 'pw',
          database: 'users',
        },
      ],
      poolSize: 4,
      maxConcurrentStreams: 8,
      connectTimeoutMs: 2000,
      queryTimeoutMs: 10000,
      probeTimeoutMs: 1000,
      firstResponseTimeoutMs: 1000,
      maxReplicaLagSeconds: 2,
      replicaProbeIntervalMs: 1000,
      replicaWaitMs: 5000,
    });
  });

  it('masks URL passwords in errors', () => {
    assert.throws(() => loadConfig({ DATABASE_URL: 'mysql://app:hunter2@db' }, CWD), {
      message:
        'DATABASE_URL="mysql://app:***@db" is invalid: expected unset (SQLite at ./data/users.db), sqlite:PATH or mysql://USER:PASSWORD@HOST:PORT/DATABASE',
    });
    assert.throws(
      () => loadConfig({ DATABASE_REPLICA_URLS: 'mysql://app:pw@replica/users' }, CWD),
      {
        message:
          /^DATABASE_REPLICA_URLS="mysql:\/\/app:\*\*\*@replica\/users" is invalid: expected a comma-separated list of mysql:\/\/ URLs \(only with a mysql:\/\/ DATABASE_URL\)$/,
      },
    );
  });

  const bad: [string, Record<string, string>, string][] = [
    [
      'SHUTDOWN_TIMEOUT_MS',
      { SHUTDOWN_DRAIN_MS: '5000', SHUTDOWN_TIMEOUT_MS: '4000' },
      'SHUTDOWN_TIMEOUT_MS="4000" is invalid: expected an integer from 1000 to 3600000, more than SHUTDOWN_DRAIN_MS',
    ],
    [
      'MIGRATE_ON_START',
      { MIGRATE_ON_START: 'yes' },
      'MIGRATE_ON_START="yes" is invalid: expected true or false',
    ],
    [
      'DB_POOL_SIZE',
      { DATABASE_URL: 'mysql://a:b@h/d', DB_POOL_SIZE: '0' },
      'DB_POOL_SIZE="0" is invalid',
    ],
    [
      'PORT',
      { PORT: '88a' },
      'PORT="88a" is invalid: expected an integer from 0 to 65535 (0 picks a free port)',
    ],
    ['PORT', { PORT: '70000' }, 'PORT="70000" is invalid'],
    [
      'IMPORT_ON_START',
      { IMPORT_ON_START: 'always' },
      'IMPORT_ON_START="always" is invalid: expected if-empty or never',
    ],
    ['LOG_LEVEL', { LOG_LEVEL: 'verbose' }, 'LOG_LEVEL="verbose" is invalid'],
    ['MAX_UPLOAD_BYTES', { MAX_UPLOAD_BYTES: '0' }, 'MAX_UPLOAD_BYTES="0" is invalid'],
    ['DATABASE_URL', { DATABASE_URL: 'postgres://x' }, 'DATABASE_URL="postgres://x" is invalid'],
    [
      'DATABASE_URL',
      { DATABASE_URL: 'sqlite::memory:' },
      'DATABASE_URL="sqlite::memory:" is invalid',
    ],
    ['SERVER_NAME', { SERVER_NAME: 'web server 1' }, 'SERVER_NAME="web server 1" is invalid'],
    ['DATA_FILE', { DATA_FILE: 'users.xlsx' }, 'DATA_FILE="users.xlsx" is invalid'],
    [
      'NODE_ENV',
      { NODE_ENV: 'staging' },
      'NODE_ENV="staging" is invalid: expected production, development or test',
    ],
  ];
  for (const [name, env, message] of bad) {
    it(`stops on a bad ${name} with one line naming it`, () => {
      assert.throws(
        () => loadConfig(env, CWD),
        (error: unknown) =>
          error instanceof ConfigError &&
          error.message.startsWith(message) &&
          !error.message.includes('\n'),
      );
    });
  }

  it('never echoes a secret in the error', () => {
    assert.throws(() => loadConfig({ ADMIN_TOKEN: 'short' }, CWD), {
      message: `ADMIN_TOKEN=(hidden) is invalid: expected ${CONFIG_SCHEMA.ADMIN_TOKEN.allowed}`,
    });
    assert.throws(() => loadConfig({ METRICS_TOKEN: 'short' }, CWD), {
      message: `METRICS_TOKEN=(hidden) is invalid: expected ${CONFIG_SCHEMA.METRICS_TOKEN.allowed}`,
    });
  });

  it('refuses a token that an Authorization: Bearer header cannot carry, naming the variable', () => {
    const unusable = [
      'an admin token with spaces',
      ' leading-space-0123456789',
      'trailing-space-0123456789 ',
      'tab\tinside-0123456789',
      'quote"inside-0123456789',
      'comma,inside-0123456789',
      'equals=inside-0123456789',
      'umlaut-ü-inside-0123456789',
    ];
    for (const name of ['ADMIN_TOKEN', 'METRICS_TOKEN'] as const) {
      for (const token of unusable) {
        assert.throws(
          () => loadConfig({ [name]: token }, CWD),
          (error: unknown) =>
            error instanceof ConfigError &&
            error.message.startsWith(`${name}=(hidden) is invalid: expected`) &&
            !error.message.includes(token.trim()),
          `${name}=${JSON.stringify(token)}`,
        );
      }
      // What `openssl rand -hex 32` and `openssl rand -base64 32` print is accepted.
      for (const token of [
        '9f2c4e0b7a1d3f5e6c8b0a2d4f6e8c0b',
        'q1W2e3R4t5Y6u7I8o9P0+a/s-d.f_g~h==',
      ]) {
        assert.equal(
          loadConfig({ [name]: token }, CWD)[
            name === 'ADMIN_TOKEN' ? 'adminToken' : 'metricsToken'
          ],
          token,
        );
      }
    }
  });

  it('reads only the schema variables from the environment, treating empty as unset', () => {
    assert.deepEqual(readEnv({ PORT: '1', HOME: '/root', LOG_LEVEL: '' }), { PORT: '1' });
  });
});

describe('config schema', () => {
  it('is documented in the docs/configuration.md table and in .env.example', async () => {
    const docs = await readFile(join(REPO_ROOT, 'docs', 'configuration.md'), 'utf8');
    const example = await readFile(join(REPO_ROOT, '.env.example'), 'utf8');
    for (const name of Object.keys(CONFIG_SCHEMA)) {
      assert.match(
        docs,
        new RegExp(`^\\| \`${name}\` +\\|`, 'm'),
        `docs/configuration.md lacks a row for ${name}`,
      );
      assert.match(example, new RegExp(`^#? ?${name}=`, 'm'), `.env.example lacks ${name}`);
    }
  });
});
