import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { SERVE_NODE_FLAGS } from '../../scripts/serve-node-flags.js';
import { writeBackupStatus } from '../../src/backup/backup-status.js';
import { CONFIG_SCHEMA } from '../../src/config/config-schema.js';
import { loadConfig } from '../../src/config/config.js';
import { readEnv } from '../../src/config/env.js';
import { parseDuration } from '../../src/monitor/parse-duration.js';
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
  healthcheck?: { test?: string[]; start_period?: string };
  depends_on?: Record<string, { condition: string }>;
  volumes?: (string | { type?: string; source?: string })[];
  sysctls?: Record<string, string | number> | string[];
  secrets?: string[];
}

/** A service's secrets, as `/run/secrets/NAME` paths in its container. */
const SECRET_PATH = /^\/run\/secrets\/([a-z0-9_]+)$/;

const compose = parse(readFileSync(join(REPO_ROOT, 'compose.yaml'), 'utf8'), { merge: true }) as {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
  secrets?: Record<string, { environment?: string; file?: string }>;
};

/** The secret files an operator makes (`npm run secrets:init -- DIR`), in a temp folder. */
const SECRETS_DIR = join(mkdtempSync(join(tmpdir(), 'users-api-deploy-secrets-')), 'secrets');
execFileSync('scripts/secrets-init.sh', [SECRETS_DIR], { cwd: REPO_ROOT, stdio: 'ignore' });
after(() => rmSync(join(SECRETS_DIR, '..'), { recursive: true, force: true }));
/** The host file behind `/run/secrets/NAME` in `service`, which must be given that secret. */
function secretFile(service: string, path: string | number | undefined): string {
  const name = SECRET_PATH.exec(String(path))?.[1];
  assert.ok(name !== undefined, `${service}: ${path} is not under /run/secrets/`);
  assert.ok(
    services[service]?.secrets?.includes(name),
    `${service} is not given the secret ${name}`,
  );
  assert.equal(compose.secrets?.[name]?.file, `\${SECRETS_DIR:-./secrets}/${name}`, name);
  return join(SECRETS_DIR, name);
}
/** MariaDB's mysql_native_password hash of a password. */
function mariadbHash(password: string): string {
  const once = createHash('sha1').update(password).digest();
  return `*${createHash('sha1').update(once).digest('hex').toUpperCase()}`;
}
const services = compose.services;
const appServices = Object.entries(services).filter(([, service]) => service.build !== undefined);
/**
 * MariaDB services set up as replicas: REPLICATION_PRIMARY_HOST names their primary, for
 * deploy/mysql/replica/10-replicate-from-primary.sh.
 */
const replicaServices = Object.entries(services).filter(
  ([, service]) => service.environment?.REPLICATION_PRIMARY_HOST !== undefined,
);
const dockerfile = readFileSync(join(REPO_ROOT, 'Dockerfile'), 'utf8');

/** The .env a first-time operator writes: nothing is required (the secrets are files). */
const DOT_ENV: Record<string, string> = {};

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

interface Stage {
  name: string | undefined;
  /** The base image, ARG defaults and earlier stage names resolved. */
  image: string;
  workdir: string;
  /** This stage's instructions, continuation lines joined. */
  lines: string[];
}

/** The Dockerfile's build stages, in order. */
function stages(): Stage[] {
  const args = new Map<string, string>();
  const result: Stage[] = [];
  for (const line of dockerfile.replace(/\\\n/g, ' ').split('\n')) {
    const [keyword = '', ...rest] = line.trim().split(/\s+/);
    const current = result.at(-1);
    if (/^ARG$/i.test(keyword) && current === undefined) {
      const [name = '', ...value] = rest.join(' ').split('=');
      args.set(name, value.join('='));
    } else if (/^FROM$/i.test(keyword)) {
      const [from = '', as, name] = rest.filter((word) => !word.startsWith('--'));
      const resolved = from.replace(/\$\{?(\w+)\}?/g, (_all, arg: string) => args.get(arg) ?? '');
      const earlier = result.find((stage) => stage.name === resolved);
      result.push({
        name: as?.toUpperCase() === 'AS' ? name : undefined,
        image: earlier?.image ?? resolved,
        workdir: earlier?.workdir ?? '/',
        lines: [],
      });
    } else if (current !== undefined && keyword !== '' && !keyword.startsWith('#')) {
      current.lines.push(line.trim());
      if (/^WORKDIR$/i.test(keyword)) current.workdir = posix.resolve(current.workdir, rest[0]!);
    }
  }
  return result;
}

/** The variables a stage's ENV instructions set (KEY=value pairs, or the old `ENV KEY value`). */
function stageEnv(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of stage.lines) {
    const [keyword, ...words] = line.split(/\s+/);
    if (!/^ENV$/i.test(keyword ?? '')) continue;
    if (words[0] !== undefined && !words[0].includes('=')) {
      env[words[0]] = words.slice(1).join(' ');
      continue;
    }
    for (const word of words) {
      const at = word.indexOf('=');
      if (at > 0) env[word.slice(0, at)] = word.slice(at + 1).replace(/^(["'])(.*)\1$/, '$2');
    }
  }
  return env;
}

/** Host paths of a service's bind mounts (short `./src:/dst[:ro]` or long `type: bind`). */
function bindSources(service: ComposeService): string[] {
  return (service.volumes ?? []).flatMap((volume) => {
    if (typeof volume !== 'string') return volume.type === 'bind' ? [volume.source ?? ''] : [];
    // A path alone is an anonymous volume at that path in the container.
    const [source = '', target] = volume.split(':');
    return target !== undefined && /^[./~]/.test(source) ? [source] : [];
  });
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
      // Each *_FILE is a secret the service is given, read here from the files secrets:init made.
      const raw = readEnv(
        Object.fromEntries(
          Object.entries(env).map(([key, value]) => [
            key,
            key.endsWith('_FILE') ? secretFile(name, value) : interpolate(value),
          ]),
        ),
      );
      const config = loadConfig(raw, '/app');
      assert.equal(config.database.dialect, 'mysql', name);
      assert.equal(
        config.adminToken,
        readFileSync(join(SECRETS_DIR, 'admin_token'), 'utf8'),
        `${name}: admin token`,
      );
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

  it('publishes HAProxy on its ports, and Prometheus and Alertmanager on loopback only', () => {
    const loopbackOnly: Record<string, string> = { prometheus: '9090', alertmanager: '9093' };
    for (const [name, service] of Object.entries(services)) {
      if (name === 'haproxy') continue;
      const port = loopbackOnly[name];
      if (port === undefined) {
        assert.equal(service.ports, undefined, `${name} publishes ports`);
        continue;
      }
      assert.equal(service.ports?.length, 1, name);
      assert.match(
        service.ports[0]!,
        new RegExp(`^127\\.0\\.0\\.1:\\$\\{[A-Z_]+:-${port}\\}:${port}$`),
      );
    }
    const haproxy = services.haproxy!;
    const env = haproxy.environment ?? {};
    const published = (variable: string, port: string | number | undefined) =>
      `\${PUBLISH_ADDR:-0.0.0.0}:\${${variable}:-${port}}:${port}`;
    assert.deepEqual(haproxy.ports, [
      published('PUBLISH_HTTP_PORT', env.LB_PORT),
      published('PUBLISH_HTTPS_PORT', env.LB_TLS_PORT),
      published('PUBLISH_STATS_PORT', env.STATS_PORT),
    ]);
    const appPort = stageEnv(stages().at(-1)!).PORT;
    assert.equal(env.APP1_ADDR, `webserver1:${appPort}`);
    assert.equal(env.APP2_ADDR, `webserver2:${appPort}`);
    assert.ok(services.webserver1 && services.webserver2);
    assert.equal(services.webserver1.environment?.SERVER_NAME, 'webserver1');
    assert.equal(services.webserver2.environment?.SERVER_NAME, 'webserver2');
  });

  it('points the replica at the primary service, which writes a binlog', () => {
    const replica = services['db-replica']!;
    const primaryName = String(replica.environment?.REPLICATION_PRIMARY_HOST);
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

  it('creates the app user on the primary only, and replicates with the account it creates', () => {
    assert.ok(replicaServices.length >= 1);
    for (const [name, replica] of replicaServices) {
      const primaryName = String(replica.environment?.REPLICATION_PRIMARY_HOST);
      const primary = services[primaryName]!;
      assert.equal(
        replica.environment?.REPLICATION_USER,
        primary.environment?.MARIADB_REPLICATION_USER,
        `${name}: the replication user`,
      );
      // The replica's password file is the one whose hash the primary creates the account with.
      const password = readFileSync(
        secretFile(name, replica.environment?.REPLICATION_PASSWORD_FILE),
        'utf8',
      );
      const hash = readFileSync(
        secretFile(primaryName, primary.environment?.MARIADB_REPLICATION_PASSWORD_HASH_FILE),
        'utf8',
      ).trim();
      assert.equal(hash, mariadbHash(password), `${name}: the replication password's hash`);
      assert.equal(
        readFileSync(
          secretFile(name, replica.environment?.MARIADB_ROOT_PASSWORD_HASH_FILE),
          'utf8',
        ),
        readFileSync(
          secretFile(primaryName, primary.environment?.MARIADB_ROOT_PASSWORD_HASH_FILE),
          'utf8',
        ),
      );
      // The image would create them on the replica with its binlog on; the primary's own
      // CREATE USER then fails there (error 1396) and replication stops.
      for (const key of Object.keys(replica.environment ?? {})) {
        assert.doesNotMatch(
          key,
          /^(MARIADB|MYSQL)_(DATABASE|USER|PASSWORD)/,
          `${name} sets ${key}: the database and app user replicate from the primary`,
        );
      }
      // Its one init script configures replication; the primary's (a GRANT) must not run here.
      const initScripts = (replica.volumes ?? []).filter(
        (volume): volume is string =>
          typeof volume === 'string' &&
          volume.split(':')[1]!.startsWith('/docker-entrypoint-initdb.d'),
      );
      assert.deepEqual(
        initScripts.map((volume) => volume.split(':')[0]),
        ['./deploy/mysql/replica/10-replicate-from-primary.sh'],
        name,
      );
    }
  });

  it("health-checks the replica's replication, not only its connection", () => {
    for (const [name, replica] of replicaServices) {
      // healthcheck.sh reads its arguments in order: --replication_* options configure the
      // --replication test that comes after them, and on their own test nothing.
      const test = replica.healthcheck?.test ?? [];
      const run = test.lastIndexOf('--replication');
      const options = test.flatMap((arg, i) => (arg.startsWith('--replication_') ? [i] : []));
      assert.ok(run > 0, `${name}: healthcheck.sh without --replication checks no replication`);
      assert.ok(options.length > 0, `${name}: no --replication_* options`);
      assert.ok(
        options.every((i) => i < run),
        `${name}: --replication_* options after --replication are ignored`,
      );
    }
  });

  it('connects the apps to the primary and the replica services as the user the primary creates', () => {
    const [[replicaName, replica]] = replicaServices as [[string, ComposeService]];
    const primaryName = String(replica.environment?.REPLICATION_PRIMARY_HOST);
    const primaryEnv = services[primaryName]!.environment ?? {};
    const primaryHash = readFileSync(
      secretFile(primaryName, primaryEnv.MARIADB_PASSWORD_HASH_FILE),
      'utf8',
    ).trim();
    const expected = (url: URL, name: string) => {
      assert.equal(decodeURIComponent(url.username), interpolate(primaryEnv.MARIADB_USER!), name);
      assert.equal(url.password, '', `${name}: the password is in DATABASE_PASSWORD_FILE only`);
      assert.equal(url.pathname, `/${interpolate(primaryEnv.MARIADB_DATABASE!)}`, name);
    };
    const replicaNames = new Set(replicaServices.map(([name]) => name));
    for (const [name, service] of appServices) {
      const env = service.environment ?? {};
      const password = readFileSync(secretFile(name, env.DATABASE_PASSWORD_FILE), 'utf8');
      assert.equal(mariadbHash(password), primaryHash, `${name}: the app password's hash`);
      const primaryUrl = new URL(interpolate(env.DATABASE_URL!));
      assert.equal(primaryUrl.hostname, primaryName, `${name}: DATABASE_URL`);
      expected(primaryUrl, `${name}: DATABASE_URL`);
      const replicaUrls = interpolate(env.DATABASE_REPLICA_URLS ?? '').split(',');
      assert.ok(replicaUrls.length >= 1);
      for (const text of replicaUrls) {
        const url = new URL(text.trim());
        assert.ok(
          replicaNames.has(url.hostname),
          `${name}: DATABASE_REPLICA_URLS names ${url.hostname}, not a replica service (${replicaName})`,
        );
        expected(url, `${name}: DATABASE_REPLICA_URLS`);
      }
    }
  });

  it('mounts only files that are in the repository, and volumes it declares', () => {
    for (const [name, service] of Object.entries(services)) {
      for (const source of bindSources(service)) {
        assert.ok(existsSync(join(REPO_ROOT, source)), `${name} mounts missing ${source}`);
      }
      for (const volume of service.volumes ?? []) {
        if (typeof volume !== 'string') continue;
        const source = volume.split(':')[0] ?? '';
        if (!/^[./~]/.test(source) && volume.includes(':'))
          assert.ok(source in (compose.volumes ?? {}), `${name} uses undeclared volume ${source}`);
      }
    }
  });

  it('lets the non-root HAProxy bind its ports, and keeps monitoring to private networks', () => {
    const haproxy = services.haproxy!;
    const env = haproxy.environment ?? {};
    const sysctls: Record<string, string | number> = Array.isArray(haproxy.sysctls)
      ? Object.fromEntries(haproxy.sysctls.map((entry) => entry.split('=') as [string, string]))
      : (haproxy.sysctls ?? {});
    const start = Number(sysctls['net.ipv4.ip_unprivileged_port_start'] ?? 1024);
    for (const port of [env.LB_PORT, env.LB_TLS_PORT, env.STATS_PORT]) {
      assert.ok(Number(port) >= start, `the image's non-root user cannot bind port ${port}`);
    }
    // haproxy.cfg reads MONITORING_ALLOW as a space-separated list (${MONITORING_ALLOW[*]}).
    const allowed = interpolate(env.MONITORING_ALLOW ?? '')
      .split(/\s+/)
      .filter(Boolean);
    assert.ok(allowed.length > 0, 'MONITORING_ALLOW has a default');
    for (const everyone of ['0.0.0.0/0', '::/0']) assert.ok(!allowed.includes(everyone), everyone);
    const config = readFileSync(join(REPO_ROOT, 'deploy/haproxy/haproxy.cfg'), 'utf8');
    const own = /^\s*presetenv MONITORING_ALLOW "([^"]*)"$/m.exec(config)?.[1];
    assert.deepEqual(allowed, own?.split(' '), "compose's default is haproxy.cfg's own");
  });

  it("mounts HAProxy's certificate folder read-only, serving plain HTTP until .env names a certificate", async () => {
    const haproxy = services.haproxy!;
    const mount = (haproxy.volumes ?? []).find(
      (volume): volume is string =>
        typeof volume === 'string' && volume.startsWith('./deploy/haproxy/certs:'),
    );
    assert.ok(mount, 'deploy/haproxy/certs is mounted');
    const [, target, mode] = mount.split(':');
    assert.equal(mode, 'ro');
    assert.match(String(haproxy.environment?.TLS_CERT_FILE), /^\$\{TLS_CERT_FILE:-\}$/);
    // A folder, not a file: a certificate replaced by a rename shows in the container.
    const example = readFileSync(join(REPO_ROOT, '.env.example'), 'utf8');
    assert.equal(
      /^# TLS_CERT_FILE=(.*)$/m.exec(example)?.[1],
      target,
      '.env.example names the mount',
    );
    // Keys stay out of git and out of the image's build context.
    const { stdout } = await promisify(execFile)(
      'git',
      ['check-ignore', 'deploy/haproxy/certs/example.com.pem'],
      { cwd: REPO_ROOT },
    );
    assert.equal(stdout.trim(), 'deploy/haproxy/certs/example.com.pem');
    const ignored = readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8').split('\n');
    assert.ok(ignored.includes('deploy/haproxy/certs'), '.dockerignore lacks deploy/haproxy/certs');
  });

  it("gives Prometheus the stats password HAProxy's userlist secret hashes, and the apps' metrics token", () => {
    const scrape = parse(
      readFileSync(join(REPO_ROOT, 'deploy/prometheus/prometheus.yml'), 'utf8'),
    ) as {
      scrape_configs: {
        job_name: string;
        basic_auth?: { username?: string; password_file?: string };
        authorization?: { type?: string; credentials_file?: string };
      }[];
    };
    const job = (name: string) => scrape.scrape_configs.find((c) => c.job_name === name);
    const haproxyJob = job('haproxy');
    const password = readFileSync(
      secretFile('prometheus', haproxyJob?.basic_auth?.password_file),
      'utf8',
    );
    // HAProxy reads the userlist as a second config file (`-f`), a secret it is given.
    const command = services.haproxy!.command ?? [];
    const files = command.flatMap((arg, i) => (command[i - 1] === '-f' ? [arg] : []));
    assert.equal(files[0], '/usr/local/etc/haproxy/haproxy.cfg');
    assert.equal(files.length, 2, command.join(' '));
    const userlist = readFileSync(secretFile('haproxy', files[1]), 'utf8');
    const [, user, hash] =
      /^userlist stats_users\n\s+user (\S+) password '([^']+)'\n$/.exec(userlist) ?? [];
    assert.equal(user, haproxyJob?.basic_auth?.username);
    // SHA-512 crypt of the password file's content: `openssl passwd -6 -salt SALT` agrees.
    const salt = hash?.split('$')[2] ?? '';
    const again = execFileSync('openssl', ['passwd', '-6', '-salt', salt, '-stdin'], {
      input: password,
    });
    assert.equal(again.toString().trim(), hash);
    assert.equal(services.haproxy!.environment?.STATS_PASSWORD, undefined);
    // The apps' /metrics token: the file Prometheus sends is the one the apps compare with.
    const appsJob = job('users-api');
    assert.equal(appsJob?.authorization?.type ?? 'Bearer', 'Bearer');
    assert.equal(
      secretFile('prometheus', appsJob?.authorization?.credentials_file),
      secretFile('webserver1', services.webserver1!.environment?.METRICS_TOKEN_FILE),
    );
  });

  it("reports the backup sidecar unhealthy once its last verified backup is older than its schedule's", async (t) => {
    const backup = services.backup!;
    const every = parseDuration(backup.command?.[backup.command.indexOf('--every') + 1] ?? '');
    assert.ok(every !== undefined, 'backup runs with --every');
    const test = backup.healthcheck?.test ?? [];
    assert.deepEqual(test.slice(0, 3), ['CMD', 'node', '-e']);
    const maxAgeSeconds = Number(test.at(-1));
    assert.ok(maxAgeSeconds * 1000 > every, 'the health check allows one interval, and more');
    assert.ok(backup.healthcheck?.start_period, 'the first backup gets a start period');
    const dir = await mkdtemp(join(tmpdir(), 'users-api-backup-health-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const env = { PATH: process.env.PATH, BACKUP_DIR: dir };
    const check = () =>
      promisify(execFile)(process.execPath, test.slice(2), { env }).then(
        () => 0,
        (error: { code?: number }) => error.code ?? 1,
      );
    assert.notEqual(await check(), 0, 'no backup yet');
    const status = { file: 'users.ndjson.gz', rows: 1 };
    await writeBackupStatus(dir, { ...status, at: new Date().toISOString() });
    assert.equal(await check(), 0, 'a fresh backup');
    const stale = new Date(Date.now() - (maxAgeSeconds + 60) * 1000);
    await writeBackupStatus(dir, { ...status, at: stale.toISOString() });
    assert.equal(await check(), 1, 'a stale backup');
  });

  it('commits no secret and puts none in the environment: each is a file-based secret', () => {
    // Every secret is a file in SECRETS_DIR (default ./secrets, git-ignored) that secrets:init makes.
    assert.ok(Object.keys(compose.secrets ?? {}).length >= 8);
    for (const [secret, source] of Object.entries(compose.secrets ?? {})) {
      assert.deepEqual(source, { file: `\${SECRETS_DIR:-./secrets}/${secret}` }, secret);
      assert.ok(existsSync(join(SECRETS_DIR, secret)), `secrets:init does not make ${secret}`);
    }
    // git check-ignore exits 1 (execFileSync throws) when the path is not ignored.
    execFileSync('git', ['check-ignore', '-q', 'secrets/admin_token'], { cwd: REPO_ROOT });
    assert.ok(
      readFileSync(join(REPO_ROOT, '.dockerignore'), 'utf8').split('\n').includes('secrets'),
      '.dockerignore lacks secrets',
    );
    for (const [name, service] of Object.entries(services)) {
      for (const secret of service.secrets ?? []) assert.ok(secret in (compose.secrets ?? {}));
      for (const [key, value] of Object.entries(service.environment ?? {})) {
        const text = String(value);
        if (/PASSWORD|TOKEN|SECRET/.test(key)) {
          // Only a path to a secret the service is given: never a value, not even from .env.
          assert.match(key, /_FILE$/, `${name}.${key} holds a value`);
          secretFile(name, text);
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
    // With compose's command: the userlist secret as the second file.
    const command = (services.haproxy!.command ?? []).map((arg) =>
      arg === '/usr/local/etc/haproxy/haproxy.cfg'
        ? join(REPO_ROOT, 'deploy/haproxy/haproxy.cfg')
        : SECRET_PATH.test(arg)
          ? secretFile('haproxy', arg)
          : arg,
    );
    const { stdout } = await promisify(execFile)(haproxy, ['-c', ...command], { env });
    assert.match(stdout, /Configuration file is valid/);
  });
});

describe('deploy/haproxy/haproxy.cfg', () => {
  it('lists every variable it reads in its header and in the HAProxy table of docs/configuration.md', () => {
    const lines = readFileSync(join(REPO_ROOT, 'deploy/haproxy/haproxy.cfg'), 'utf8').split('\n');
    const header = lines
      .slice(
        0,
        lines.findIndex((line) => !line.startsWith('#')),
      )
      .join('\n');
    const code = lines.filter((line) => !line.trimStart().startsWith('#')).join('\n');
    const read = new Set([...code.matchAll(/\$\{([A-Z][A-Z0-9_]*)/g)].map((match) => match[1]!));
    assert.ok(read.has('TLS_CERT_FILE') && read.has('APP1_ADDR'), [...read].join(', '));
    const docs = readFileSync(join(REPO_ROOT, 'docs/configuration.md'), 'utf8');
    const table = /^## HAProxy[^\n]*$([\s\S]*?)(?=^## |(?![\s\S]))/m.exec(docs)?.[1] ?? '';
    const documented = new Set(
      [...table.matchAll(/^\| ([^|]+)\|/gm)].flatMap((row) =>
        [...row[1]!.matchAll(/`([A-Z][A-Z0-9_]*)`/g)].map((name) => name[1]!),
      ),
    );
    for (const name of read) {
      assert.match(header, new RegExp(`\\b${name}\\b`), `haproxy.cfg's header lacks ${name}`);
      assert.ok(documented.has(name), `docs/configuration.md's HAProxy table lacks ${name}`);
    }
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

  it('copies from earlier stages only what npm ci and npm run build produce', () => {
    const all = stages();
    for (const [index, stage] of all.entries()) {
      for (const line of stage.lines) {
        if (!/^COPY\s/i.test(line)) continue;
        const from = /--from=(\S+)/.exec(line)?.[1];
        if (from === undefined) continue;
        const source = all.slice(0, index).find((earlier) => earlier.name === from);
        assert.ok(source, `COPY --from=${from}: no earlier stage ${from}`);
        const paths = line.split(/\s+/).filter((word) => !word.startsWith('--'));
        for (const path of paths.slice(1, -1)) {
          // The build stages work in a copy of the repository, where CI has run the same steps.
          const inRepo = posix.relative(source.workdir, posix.resolve(source.workdir, path));
          assert.ok(!inRepo.startsWith('..'), `COPY --from=${from} ${path}: outside its WORKDIR`);
          assert.ok(existsSync(join(REPO_ROOT, inRepo)), `COPY --from=${from} ${path}: missing`);
        }
      }
    }
  });

  it('starts every stage from the same slim Node 26 image', () => {
    const images = new Set(stages().map((stage) => stage.image));
    assert.equal(images.size, 1, [...images].join(', '));
    assert.match([...images][0]!, /^node:26(\.\d+){0,2}-([a-z0-9]+-)?slim(@sha256:[0-9a-f]{64})?$/);
  });

  it('runs as the node user, with an init, on port 8888, with a volume for SQLite', () => {
    assert.deepEqual(instructions('USER'), ['node']);
    assert.deepEqual(instructions('EXPOSE'), ['8888']);
    assert.deepEqual(execForm('ENTRYPOINT').slice(0, 2), ['tini', '--']);
    assert.deepEqual(instructions('VOLUME'), ['["/app/data"]']);
    assert.equal(stageEnv(stages().at(-1)!).NODE_ENV, 'production', 'runtime stage ENV');
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
    for (const entry of ['node_modules', 'data/*.db', 'data/backups', 'test', '.git', '.env']) {
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
