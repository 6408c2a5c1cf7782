import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { SERVE_NODE_FLAGS } from '../../scripts/serve-node-flags.js';
import { CONFIG_SCHEMA } from '../../src/config/config-schema.js';
import { loadConfig } from '../../src/config/config.js';
import { readEnv } from '../../src/config/env.js';
import { startChildServer } from '../helpers/child-server.js';
import { requireBinary } from '../helpers/external-services.js';
import { REPO_ROOT } from '../helpers/paths.js';

// No Docker engine runs here: these tests check what can be checked without one. The image's
// build and start commands are the npm scripts CI runs, and its start and health check
// commands are run for real, outside a container.

interface ComposeService {
  build?: unknown;
  image?: string;
  command?: string[];
  environment?: Record<string, string | number>;
  ports?: string[];
  healthcheck?: { test?: string[] };
  depends_on?: Record<string, { condition: string }>;
}

const compose = parse(readFileSync(join(REPO_ROOT, 'compose.yaml'), 'utf8'), { merge: true }) as {
  services: Record<string, ComposeService>;
};
const services = compose.services;
const appServices = Object.entries(services).filter(([, service]) => service.build !== undefined);
const dockerfile = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');

/** The .env a first-time operator writes: every CHANGE_ME replaced. */
const DOT_ENV: Record<string, string> = {
  DB_ROOT_PASSWORD: 'root-secret',
  DB_PASSWORD: 'app-secret',
  DB_REPLICATION_PASSWORD: 'repl-secret',
  STATS_PASSWORD: 'stats-secret',
  ADMIN_TOKEN: 'admin-token-0123456789abcdef',
};

/** Compose's interpolation: ${NAME}, ${NAME:-default}, ${NAME:?message}. */
function interpolate(value: string | number): string {
  return String(value).replace(
    /\$\{([A-Z_]+)(?::([-?])([^}]*))?\}/g,
    (_all, name: string, kind, rest: string) => {
      const given = DOT_ENV[name];
      if (given !== undefined && given !== '') return given;
      if (kind === '-') return rest;
      throw new Error(`compose needs ${name} in .env`);
    },
  );
}

/** Dockerfile instructions, continuation lines joined. */
function instructions(keyword: string): string[] {
  return dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .filter((line) => line.startsWith(`${keyword} `))
    .map((line) => line.slice(keyword.length + 1).trim());
}

function execForm(keyword: string): string[] {
  const [line] = instructions(keyword);
  assert.ok(line, `Dockerfile has no ${keyword}`);
  // HEALTHCHECK options and its CMD keyword come before the JSON array.
  return JSON.parse(line.slice(line.indexOf('['))) as string[];
}

describe('compose.yaml', () => {
  it('gives the app only variables its config schema knows, and they load', () => {
    assert.ok(
      appServices.length >= 3,
      'webserver1, webserver2 and backup are built from the image',
    );
    for (const [name, service] of appServices) {
      const env = service.environment ?? {};
      for (const key of Object.keys(env)) {
        assert.ok(
          key in CONFIG_SCHEMA,
          `${name} sets ${key}, which the config schema does not have`,
        );
      }
      // Through readEnv, as the container reads its environment (empty counts as unset).
      const raw = readEnv(
        Object.fromEntries(Object.entries(env).map(([key, value]) => [key, interpolate(value)])),
      );
      const config = loadConfig(raw, '/app');
      assert.equal(config.database.dialect, 'mysql', name);
    }
  });

  it('has a health check on every service, and waits for health before starting dependants', () => {
    for (const [name, service] of Object.entries(services)) {
      assert.ok((service.healthcheck?.test?.length ?? 0) > 0, `${name} has no health check`);
      for (const [dependency, { condition }] of Object.entries(service.depends_on ?? {})) {
        assert.ok(dependency in services, `${name} depends on unknown ${dependency}`);
        assert.equal(condition, 'service_healthy', `${name} → ${dependency}`);
      }
    }
  });

  it('publishes only HAProxy, on the ports its config listens on, in front of the app port', () => {
    for (const [name, service] of Object.entries(services)) {
      if (name !== 'haproxy') assert.equal(service.ports, undefined, `${name} publishes ports`);
    }
    const haproxy = services.haproxy!;
    const env = haproxy.environment ?? {};
    assert.deepEqual(haproxy.ports, [
      `${env.LB_PORT}:${env.LB_PORT}`,
      `${env.STATS_PORT}:${env.STATS_PORT}`,
    ]);
    const appPort = /^\s*PORT=(\d+)/m.exec(dockerfile)?.[1];
    assert.equal(env.APP1_ADDR, `webserver1:${appPort}`);
    assert.equal(env.APP2_ADDR, `webserver2:${appPort}`);
    assert.ok(services.webserver1 && services.webserver2);
    assert.equal(services.webserver1.environment?.SERVER_NAME, 'webserver1');
    assert.equal(services.webserver2.environment?.SERVER_NAME, 'webserver2');
  });

  it('points the replica at the primary service, which writes a binlog', () => {
    const replica = services['db-replica']!;
    const primaryName = String(replica.environment?.MARIADB_MASTER_HOST);
    assert.equal(primaryName, 'db-primary');
    const primary = services[primaryName]!;
    assert.ok(
      primary.command?.some((arg) => arg.startsWith('--log-bin')),
      'the primary writes a binlog',
    );
    assert.ok(replica.command?.includes('--read-only=1'), 'the replica is read-only');
    assert.notEqual(
      primary.command?.find((arg) => arg.startsWith('--server-id')),
      replica.command?.find((arg) => arg.startsWith('--server-id')),
    );
  });

  it('commits no secret: passwords and tokens come from .env', () => {
    for (const [name, service] of Object.entries(services)) {
      for (const [key, value] of Object.entries(service.environment ?? {})) {
        const text = String(value);
        if (/PASSWORD|TOKEN|SECRET/.test(key)) {
          assert.match(text, /^\$\{[A-Z_]+(:[-?][^}]*)?\}$/, `${name}.${key} is a literal`);
        }
        // In a URL the password must be one whole interpolation: with each ${…} replaced by a
        // marker, what stands between ':' and '@' is the marker alone.
        const marked = text.replace(/\$\{[^}]*\}/g, '\u0000');
        const password = /\/\/[^:/@]+:([^@]+)@/.exec(marked)?.[1];
        if (password !== undefined)
          assert.equal(password, '\u0000', `${name}.${key} has a literal password`);
      }
    }
  });

  it('gives HAProxy values that pass haproxy -c with the real config', async (t) => {
    const haproxy = await requireBinary(t, ['haproxy'], 'haproxy');
    if (haproxy === undefined) return;
    const env = Object.fromEntries(
      Object.entries(services.haproxy!.environment ?? {}).map(([key, value]) => [
        key,
        interpolate(value),
      ]),
    );
    const { stdout } = await promisify(execFile)(
      haproxy,
      ['-c', '-f', join(REPO_ROOT, 'deploy/haproxy/haproxy.cfg')],
      { env },
    );
    assert.match(stdout, /Configuration file is valid/);
  });
});

describe('Dockerfile', () => {
  it('builds with the npm scripts CI runs, and copies only files that exist', () => {
    const runs = instructions('RUN').join('\n');
    assert.match(runs, /npm ci --ignore-scripts/);
    assert.match(runs, /npm run build/);
    assert.match(runs, /npm ci --omit=dev --ignore-scripts && npm rebuild better-sqlite3/);
    const packageJson = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
      scripts: Record<string, string>;
    };
    assert.ok(packageJson.scripts.build, 'npm run build exists');
    for (const copy of instructions('COPY')) {
      if (copy.includes('--from=')) continue;
      const sources = copy.replace(/--\S+/g, '').trim().split(/\s+/).slice(0, -1);
      for (const source of sources)
        assert.ok(existsSync(join(REPO_ROOT, source)), `COPY ${source} is missing`);
    }
  });

  it('runs as the node user, with an init, on port 8888, with a volume for SQLite', () => {
    assert.deepEqual(instructions('USER'), ['node']);
    assert.deepEqual(instructions('EXPOSE'), ['8888']);
    assert.deepEqual(execForm('ENTRYPOINT').slice(0, 2), ['tini', '--']);
    assert.deepEqual(instructions('VOLUME'), ['["/app/data"]']);
    assert.match(dockerfile, /NODE_ENV=production/);
  });

  it('starts the built entry point, and its HEALTHCHECK passes against it and fails without it', async (t) => {
    // The same command the container runs (tini aside), from the repository's built dist/.
    const command = [...execForm('ENTRYPOINT').slice(2), ...execForm('CMD')];
    assert.deepEqual(command, ['node', ...SERVE_NODE_FLAGS, 'dist/main.js', 'serve'], 'npm start');
    assert.ok(
      existsSync(join(REPO_ROOT, command.at(-2)!)),
      'dist/main.js exists after npm run build',
    );
    const health = execForm('HEALTHCHECK');
    const dir = await mkdtemp(join(tmpdir(), 'users-api-image-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const env = {
      PATH: process.env.PATH,
      PORT: '0',
      HOST: '127.0.0.1',
      DATABASE_URL: `sqlite:${join(dir, 'users.db')}`,
      NODE_ENV: 'production',
    };
    const server = await startChildServer(t, process.execPath, command.slice(1), {
      cwd: REPO_ROOT,
      env,
    });
    const port = new URL(server.url).port;
    const check = () =>
      promisify(execFile)(process.execPath, health.slice(1), { env: { ...env, PORT: port } }).then(
        () => 0,
        (error: { code?: number }) => error.code ?? 1,
      );
    assert.equal(await check(), 0);
    await server.stop();
    assert.equal(await check(), 1);
  });

  it('keeps node_modules, databases, tests and .git out of the build context', () => {
    const ignored = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8').split('\n');
    for (const entry of ['node_modules', 'data/*.db', 'test', '.git', '.env']) {
      assert.ok(ignored.includes(entry), `.dockerignore lacks ${entry}`);
    }
  });
});

describe('deploy/systemd/users-api.service', () => {
  it('starts the built entry point with serve and gives the drain time to finish', () => {
    const unit = readFileSync(join(REPO_ROOT, 'deploy/systemd/users-api.service'), 'utf8');
    assert.match(
      unit,
      new RegExp(
        `^ExecStart=/usr/bin/node ${SERVE_NODE_FLAGS.join(' ')} /opt/users-api/dist/main\\.js serve$`,
        'm',
      ),
    );
    assert.match(unit, /^KillSignal=SIGTERM$/m);
    const stopSeconds = Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)?.[1]);
    const timeoutMs = Number(CONFIG_SCHEMA.SHUTDOWN_TIMEOUT_MS.default);
    assert.ok(stopSeconds * 1000 > timeoutMs, 'systemd waits longer than SHUTDOWN_TIMEOUT_MS');
    assert.match(unit, /^User=users-api$/m);
  });
});
