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
      database: { dialect: 'sqlite', path: '/srv/users-api/data/users.db' },
      dataFile: '/srv/users-api/data/users.csv',
      importOnStart: 'if-empty',
      adminToken: undefined,
      maxUploadBytes: 52_428_800,
      logLevel: 'info',
      nodeEnv: 'production',
      metricsToken: undefined,
    });
  });

  it('returns a frozen object', () => {
    assert.ok(Object.isFrozen(loadConfig({}, CWD)));
  });

  it('reads sqlite: URLs, relative and absolute', () => {
    assert.equal(
      loadConfig({ DATABASE_URL: 'sqlite:db/x.db' }, CWD).database.path,
      '/srv/users-api/db/x.db',
    );
    assert.equal(
      loadConfig({ DATABASE_URL: 'sqlite:///tmp/x.db' }, CWD).database.path,
      '/tmp/x.db',
    );
  });

  const bad: [string, Record<string, string>, string][] = [
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
      message: 'ADMIN_TOKEN=(hidden) is invalid: expected at least 16 characters',
    });
    assert.throws(() => loadConfig({ METRICS_TOKEN: 'short' }, CWD), {
      message: 'METRICS_TOKEN=(hidden) is invalid: expected at least 16 characters',
    });
  });

  it('reads only the schema variables from the environment, treating empty as unset', () => {
    assert.deepEqual(readEnv({ PORT: '1', HOME: '/root', LOG_LEVEL: '' }), { PORT: '1' });
  });
});

describe('config schema', () => {
  it('is documented in the README table and in .env.example', async () => {
    const readme = await readFile(join(REPO_ROOT, 'README.md'), 'utf8');
    const example = await readFile(join(REPO_ROOT, '.env.example'), 'utf8');
    for (const name of Object.keys(CONFIG_SCHEMA)) {
      assert.match(
        readme,
        new RegExp(`^\\| \`${name}\` +\\|`, 'm'),
        `README lacks a row for ${name}`,
      );
      assert.match(example, new RegExp(`^#? ?${name}=`, 'm'), `.env.example lacks ${name}`);
    }
  });
});
