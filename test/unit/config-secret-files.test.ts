import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig, type ReadSecretFile } from '../../src/config/config.js';

const CWD = '/srv/users-api';
const TOKEN = '9f2c4e0b7a1d3f5e6c8b0a2d4f6e8c0b';
const METRICS = 'q1W2e3R4t5Y6u7I8o9P0+a/s-d.f_g~h==';
const PASSWORD = 'p@ss:w/ord with spaces';

/** Files by absolute path, as the real reader would find them; anything else is ENOENT. */
function filesReader(files: Record<string, string>): ReadSecretFile {
  return (path) => {
    const text = files[path];
    if (text !== undefined) return text;
    throw Object.assign(new Error(`ENOENT: no such file or directory, open '${path}'`), {
      code: 'ENOENT',
    });
  };
}

/** loadConfig's ConfigError message, asserting it is one line and shows no secret. */
function configError(run: () => unknown, secrets: string[]): string {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    assert.ok(!error.message.includes('\n'), error.message);
    for (const secret of secrets) assert.ok(!error.message.includes(secret), error.message);
    return error.message;
  }
  assert.fail('expected a ConfigError');
}

describe('loadConfig: secrets from files (*_FILE)', () => {
  const read = filesReader({
    '/run/secrets/admin_token': `${TOKEN}\n`,
    '/run/secrets/metrics_token': `${METRICS}\r\n`,
    '/run/secrets/db_password': `${PASSWORD}\n`,
    '/srv/users-api/secrets/admin_token': TOKEN,
    '/run/secrets/empty': '\n',
    '/run/secrets/bad': 'tooShortToken\n',
  });

  it('reads the tokens from files, relative paths against cwd, one trailing newline dropped', () => {
    const config = loadConfig(
      {
        ADMIN_TOKEN_FILE: '/run/secrets/admin_token',
        METRICS_TOKEN_FILE: '/run/secrets/metrics_token',
      },
      CWD,
      read,
    );
    assert.equal(config.adminToken, TOKEN);
    assert.equal(config.metricsToken, METRICS);
    assert.equal(
      loadConfig({ ADMIN_TOKEN_FILE: 'secrets/admin_token' }, CWD, read).adminToken,
      TOKEN,
    );
  });

  it('puts the database password on the primary and on every replica', () => {
    const config = loadConfig(
      {
        DATABASE_URL: 'mysql://users_app@db-primary:3306/users',
        DATABASE_REPLICA_URLS: 'mysql://users_app@db-replica:3306/users,mysql://ro@db-r2/users',
        DATABASE_PASSWORD_FILE: '/run/secrets/db_password',
      },
      CWD,
      read,
    );
    assert.equal(config.database.dialect, 'mysql');
    if (config.database.dialect !== 'mysql') return;
    assert.equal(config.database.primary.password, PASSWORD);
    assert.deepEqual(
      config.database.replicas.map((replica) => [replica.user, replica.password, replica.name]),
      [
        ['users_app', PASSWORD, 'db-replica:3306'],
        ['ro', PASSWORD, 'db-r2:3306'],
      ],
    );
  });

  it('refuses a variable set both directly and from a file, naming both', () => {
    for (const name of ['ADMIN_TOKEN', 'METRICS_TOKEN'] as const) {
      const message = configError(
        () =>
          loadConfig({ [name]: TOKEN, [`${name}_FILE`]: '/run/secrets/admin_token' }, CWD, read),
        [TOKEN],
      );
      assert.equal(message, `${name} and ${name}_FILE are both set: set only one of them`);
    }
  });

  it('refuses a password both in a URL and in DATABASE_PASSWORD_FILE, naming the URL variable', () => {
    for (const [name, env] of [
      ['DATABASE_URL', { DATABASE_URL: 'mysql://app:inurl-secret@db/users' }],
      [
        'DATABASE_REPLICA_URLS',
        {
          DATABASE_URL: 'mysql://app@db/users',
          DATABASE_REPLICA_URLS: 'mysql://app@r1/users,mysql://app:inurl-secret@r2/users',
        },
      ],
    ] as const) {
      const message = configError(
        () => loadConfig({ ...env, DATABASE_PASSWORD_FILE: '/run/secrets/db_password' }, CWD, read),
        ['inurl-secret', PASSWORD],
      );
      assert.equal(
        message,
        `${name} carries a password and DATABASE_PASSWORD_FILE is set: keep the password in the file only`,
      );
    }
  });

  it('refuses DATABASE_PASSWORD_FILE without a mysql:// DATABASE_URL', () => {
    const message = configError(
      () => loadConfig({ DATABASE_PASSWORD_FILE: '/run/secrets/db_password' }, CWD, read),
      [PASSWORD],
    );
    assert.equal(message, 'DATABASE_PASSWORD_FILE is set but DATABASE_URL is not a mysql:// URL');
  });

  it('names the variable of a missing or empty file, and of a bad token in a file, never its content', () => {
    const mysql = { DATABASE_URL: 'mysql://app@db/users' };
    for (const name of [
      'ADMIN_TOKEN_FILE',
      'METRICS_TOKEN_FILE',
      'DATABASE_PASSWORD_FILE',
    ] as const) {
      assert.equal(
        configError(() => loadConfig({ ...mysql, [name]: '/run/secrets/nope' }, CWD, read), []),
        `${name}="/run/secrets/nope" cannot be read (ENOENT)`,
      );
      assert.equal(
        configError(() => loadConfig({ ...mysql, [name]: '/run/secrets/empty' }, CWD, read), []),
        `${name}="/run/secrets/empty" is an empty file`,
      );
    }
    const message = configError(
      () => loadConfig({ ADMIN_TOKEN_FILE: '/run/secrets/bad' }, CWD, read),
      ['tooShortToken'],
    );
    assert.match(
      message,
      /^ADMIN_TOKEN_FILE="\/run\/secrets\/bad" holds an invalid token: expected /,
    );
  });
});
