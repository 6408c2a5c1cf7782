import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { connect } from 'node:tls';
import { promisify } from 'node:util';
import autocannon from 'autocannon';
import {
  createCertificateAuthority,
  issueServerCertificate,
  type CertificateAuthority,
  type ServerCertificate,
} from '../../scripts/local-certificates.js';
import { findBinary, haproxyProcess, type HaproxyProcess } from '../../scripts/local-cluster.js';
import { freePort } from '../../scripts/mariadb-pair.js';
import { startBuiltServer, type ChildServer } from '../helpers/child-server.js';
import { pollFor } from '../helpers/external-services.js';
import { REPO_ROOT } from '../helpers/paths.js';

/** The names HAProxy has certificates for; clients reach them on 127.0.0.1 (curl --resolve). */
const NAME = 'users.test';
const OTHER_NAME = 'api.example.test';
const ADMIN_TOKEN = 'admin-token-for-the-tls-tests';
const CONFIG = join(REPO_ROOT, 'deploy/haproxy/haproxy.cfg');

/** The clients and servers the tests run, found on PATH or in /usr/sbin. */
const binary = (name: 'haproxy' | 'openssl' | 'curl'): string => findBinary(name) ?? name;

/** Under CI=true a missing binary fails the run; locally the tests skip loudly. */
function skipReason(): string | undefined {
  const missing = ['haproxy', 'openssl', 'curl'].filter((name) => findBinary(name) === undefined);
  if (missing.length === 0) return undefined;
  const message = `TLS edge tests need ${missing.join(', ')} (apt-get install -y haproxy openssl curl)`;
  if (process.env.CI === 'true') throw new Error(`${message}: required under CI=true`);
  process.stderr.write(`\n!!! SKIPPING TLS edge tests: ${message}\n\n`);
  return message;
}

interface CurlAnswer {
  status: number;
  /** '1.1' or '2'. */
  version: string;
  headers: Record<string, string[]>;
  body: string;
}

/**
 * One curl request; the test's names resolve to 127.0.0.1 on every port given, and
 * certificates are checked against the test's root CA.
 */
async function curl(ca: CertificateAuthority, ports: number[], args: string[]) {
  const marker = '\n@@curl@@';
  const { stdout } = await promisify(execFile)(binary('curl'), [
    '--silent',
    '--show-error',
    '--max-time',
    '10',
    '--cacert',
    ca.rootFile,
    ...ports.flatMap((port) =>
      [NAME, OTHER_NAME].flatMap((name) => ['--resolve', `${name}:${port}:127.0.0.1`]),
    ),
    '--write-out',
    `${marker}%{json}${marker}%{header_json}`,
    ...args,
  ]);
  const [body = '', info = '{}', headers = '{}'] = stdout.split(marker);
  const written = JSON.parse(info) as { response_code: number; http_version: string };
  return {
    status: written.response_code,
    version: written.http_version,
    headers: JSON.parse(headers) as Record<string, string[]>,
    body,
  } satisfies CurlAnswer;
}

interface Handshake {
  ok: boolean;
  protocol: string | undefined;
  cipher: string | undefined;
  output: string;
}

/** A TLS handshake with `openssl s_client -brief` (stdin closed: it ends after the handshake). */
function handshake(port: number, args: string[]): Promise<Handshake> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      binary('openssl'),
      ['s_client', '-brief', '-connect', `127.0.0.1:${port}`, '-servername', NAME, ...args],
      { stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 },
    );
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      const established = /^CONNECTION ESTABLISHED$/m.test(output);
      resolve({
        ok: code === 0 && established,
        protocol: /^Protocol version: (\S+)$/m.exec(output)?.[1],
        cipher: /^Ciphersuite: (\S+)$/m.exec(output)?.[1],
        output,
      });
    });
  });
}

/** The SHA-256 fingerprint of the certificate served for `name` on `port`, verified by `ca`. */
async function servedFingerprint(
  ca: CertificateAuthority,
  port: number,
  name = NAME,
): Promise<string> {
  const socket = connect({
    host: '127.0.0.1',
    port,
    servername: name,
    ca: await readFile(ca.rootFile),
  });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    });
    return socket.getPeerCertificate().fingerprint256;
  } finally {
    socket.destroy();
  }
}

/** A bounded HTTPS load on GET /api while `during` runs; every failure counted. */
async function httpsLoadWhile(port: number, seconds: number, during: () => Promise<void>) {
  const started = Date.now();
  const load = autocannon({
    url: `https://127.0.0.1:${port}/api`,
    servername: NAME,
    connections: 16,
    duration: seconds,
  });
  const duringMs = during().then(() => Date.now() - started);
  const [result, tookMs] = await Promise.all([load, duringMs]);
  assert.ok(
    tookMs < seconds * 1000,
    `the steps under load took ${tookMs} ms of a ${seconds} s load`,
  );
  return {
    requests: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    resets: result.resets,
  };
}

const NO_FAILURES = { requests: 0, non2xx: 0, errors: 0, timeouts: 0, resets: 0 };

const skip = (t: TestContext, reason: string) =>
  (t as { skip(message?: string): void }).skip(reason);

describe('deploy/haproxy/haproxy.cfg with TLS_CERT_FILE', () => {
  it('passes haproxy -c with a certificate, and without one (unset or empty) as before', async (t) => {
    const reason = skipReason();
    if (reason !== undefined) return skip(t, reason);
    const dir = await mkdtemp(join(tmpdir(), 'users-api-tls-check-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const ca = await createCertificateAuthority(join(dir, 'ca'));
    const certificate = await issueServerCertificate(
      ca,
      [NAME],
      join(dir, 'live', NAME),
      join(dir, 'certs', `${NAME}.pem`),
    );
    const env = { APP1_ADDR: '127.0.0.1:9001', APP2_ADDR: '127.0.0.1:9002', STATS_PASSWORD: 'x' };
    const check = (extra: NodeJS.ProcessEnv) =>
      promisify(execFile)(binary('haproxy'), ['-c', '-f', CONFIG], { env: { ...env, ...extra } });
    for (const tls of [{ TLS_CERT_FILE: certificate.combinedFile }, {}, { TLS_CERT_FILE: '' }]) {
      assert.match((await check(tls)).stdout, /Configuration file is valid/, JSON.stringify(tls));
    }
    // A folder of PEMs, one per name, is read too (HAProxy picks one by SNI).
    assert.match((await check({ TLS_CERT_FILE: join(dir, 'certs') })).stdout, /valid/);
    await assert.rejects(check({ TLS_CERT_FILE: join(dir, 'missing.pem') }), /missing\.pem/);
  });
});

describe(
  'HTTPS at the edge: real HAProxy, curl and openssl, two app processes on SQLite',
  { timeout: 300_000 },
  () => {
    let reason: string | undefined;
    let dir = '';
    let ca: CertificateAuthority;
    let certificate: ServerCertificate;
    let other: ServerCertificate;
    let haproxy: HaproxyProcess;
    const apps: ChildServer[] = [];
    /** The app HAProxy's webserver1 points at (it moves in the reload test). */
    let webserver1: ChildServer | undefined;
    // Apps live as long as the suite: startBuiltServer stops them at its context's end.
    const cleanups: (() => unknown)[] = [];
    const suite = {
      after: (cleanup: () => unknown) => cleanups.push(cleanup),
    } as unknown as TestContext;
    /** A certificate for `name` as certbot writes it, and combined in the folder HAProxy reads. */
    const issue = (name: string) =>
      issueServerCertificate(
        ca,
        [name],
        join(dir, 'live', name),
        join(dir, 'certs', `${name}.pem`),
      );
    const startApp = async (name: string) => {
      const appDir = join(dir, name);
      await mkdir(appDir);
      const app = await startBuiltServer(suite, appDir, {
        SERVER_NAME: name,
        DATABASE_URL: `sqlite:${join(appDir, 'users.db')}`,
        DATA_FILE: join(REPO_ROOT, 'data/users.csv'),
        ADMIN_TOKEN,
      });
      apps.push(app);
      return app;
    };
    let ports = { lb: 0, tls: 0, stats: 0 };
    const statsPassword = 'stats-test-password';
    const measured: Record<string, unknown> = {};
    const https = (path: string) => `https://${NAME}:${ports.tls}${path}`;
    const plain = (path: string) => `http://${NAME}:${ports.lb}${path}`;
    const hostOf = (app: ChildServer) => new URL(app.url).host;

    before(async () => {
      reason = skipReason();
      if (reason !== undefined) return;
      dir = await mkdtemp(join(tmpdir(), 'users-api-tls-'));
      ca = await createCertificateAuthority(join(dir, 'ca'));
      certificate = await issue(NAME);
      other = await issue(OTHER_NAME);
      webserver1 = await startApp('webserver1');
      const webserver2 = await startApp('webserver2');
      ports = { lb: await freePort(), tls: await freePort(), stats: await freePort() };
      haproxy = haproxyProcess({
        logFile: join(dir, 'haproxy.log'),
        lbPort: ports.lb,
        statsPort: ports.stats,
        statsPassword,
        appAddrs: [hostOf(webserver1), hostOf(webserver2)],
        env: { TLS_CERT_FILE: join(dir, 'certs'), LB_TLS_PORT: String(ports.tls) },
      });
      await haproxy.start();
    });
    after(async () => {
      await haproxy?.stop('SIGKILL');
      await Promise.all(cleanups.map((cleanup) => cleanup()));
      if (dir !== '') await rm(dir, { recursive: true, force: true });
      if (Object.keys(measured).length > 0)
        process.stdout.write(`# measured ${JSON.stringify(measured)}\n`);
    });

    it('serves /api and /healthcheck over HTTP/2 with HSTS, and the next-page link resolves under https', async (t) => {
      if (reason !== undefined) return skip(t, reason);
      const health = await curl(ca, [ports.tls], ['--http2', https('/healthcheck')]);
      assert.deepEqual(
        { status: health.status, version: health.version, body: health.body },
        { status: 200, version: '2', body: 'all good from webserver1' },
      );
      const page = await curl(ca, [ports.tls], ['--http2', https('/api?limit=2')]);
      assert.equal(page.status, 200);
      assert.equal(page.version, '2');
      assert.deepEqual(page.headers['strict-transport-security'], [
        'max-age=63072000; includeSubDomains',
      ]);
      const link = /^<([^>]+)>; rel="next"$/.exec(page.headers.link?.[0] ?? '')?.[1];
      assert.ok(link !== undefined, `a full page links the next: ${String(page.headers.link)}`);
      assert.ok(link.startsWith('/api?'), `the link is relative: ${link}`);
      const next = new URL(link, https('/api?limit=2')).href;
      assert.ok(next.startsWith(https('/api?')), next);
      const second = await curl(ca, [ports.tls], ['--http2', next]);
      assert.equal(second.status, 200);
      const all = (await (await fetch(`${apps[0]!.url}/api`)).json()) as unknown[];
      assert.deepEqual(JSON.parse(second.body), all.slice(2, 4));
      // HTTP/1.1 over TLS still answers, for clients without HTTP/2.
      const h1 = await curl(ca, [ports.tls], ['--http1.1', '--head', https('/api')]);
      assert.deepEqual([h1.status, h1.version], [200, '1.1']);
      // Each name gets its own certificate from the folder (SNI).
      const otherHealth = await curl(
        ca,
        [ports.tls],
        [`https://${OTHER_NAME}:${ports.tls}/healthcheck`],
      );
      assert.equal(otherHealth.status, 200);
      assert.equal(await servedFingerprint(ca, ports.tls, OTHER_NAME), other.fingerprint256);
      assert.equal(await servedFingerprint(ca, ports.tls), certificate.fingerprint256);
    });

    it('plain HTTP redirects GET and HEAD with 308, answers /healthcheck, refuses the rest and any credentials', async (t) => {
      if (reason !== undefined) return skip(t, reason);
      for (const method of ['GET', 'HEAD']) {
        const answer = await curl(
          ca,
          [ports.lb],
          ['--request', method, plain('/api?limit=2&x=%20y')],
        );
        assert.equal(answer.status, 308, method);
        assert.deepEqual(answer.headers.location, [https('/api?limit=2&x=%20y')], method);
        assert.equal(answer.headers['strict-transport-security'], undefined, 'no HSTS in clear');
      }
      const followed = await curl(ca, [ports.lb, ports.tls], ['--location', plain('/api?limit=1')]);
      assert.deepEqual(
        [followed.status, (JSON.parse(followed.body) as unknown[]).length],
        [200, 1],
      );

      const health = await curl(ca, [ports.lb], [plain('/healthcheck')]);
      assert.deepEqual([health.status, health.body], [200, 'all good from webserver1']);
      // The compose health check's request: HTTP/1.0 and no Host.
      const bare = await curl(ca, [ports.lb], ['--http1.0', '-H', 'Host:', plain('/healthcheck')]);
      assert.equal(bare.status, 200);

      const refused: [string, string[]][] = [
        ['a write', ['--request', 'POST', plain('/addtosql')]],
        ['a write to /healthcheck', ['--request', 'DELETE', plain('/healthcheck')]],
        ['a bearer token', ['-H', `Authorization: Bearer ${ADMIN_TOKEN}`, plain('/admin/backups')]],
        ['a token to /healthcheck', ['-H', 'Authorization: Bearer x', plain('/healthcheck')]],
        ['a password', ['--user', 'admin:secret', plain('/api')]],
      ];
      for (const [what, args] of refused) {
        const answer = await curl(ca, [ports.lb], args);
        assert.equal(answer.status, 403, what);
        assert.deepEqual(answer.headers['content-type'], ['application/problem+json'], what);
        const problem = JSON.parse(answer.body) as { status: number; detail: string };
        assert.equal(problem.status, 403, what);
        assert.match(problem.detail, /HTTPS/, what);
        if (what.includes('token') || what.includes('password'))
          assert.match(problem.detail, /exposed, replace it/, what);
      }
      // Over HTTPS the same token reaches the app.
      const overTls = await curl(
        ca,
        [ports.tls],
        ['-H', `Authorization: Bearer ${ADMIN_TOKEN}`, https('/admin/backups')],
      );
      assert.equal(overTls.status, 200, overTls.body);
    });

    it('the stats listener takes TLS only, so its password is never asked for in clear', async (t) => {
      if (reason !== undefined) return skip(t, reason);
      const statsUrl = `https://${NAME}:${ports.stats}`;
      const challenge = await curl(ca, [ports.stats], [`${statsUrl}/`]);
      assert.equal(challenge.status, 401);
      const csv = await curl(
        ca,
        [ports.stats],
        ['--user', `admin:${statsPassword}`, `${statsUrl}/;csv`],
      );
      assert.equal(csv.status, 200);
      assert.match(csv.body, /^webservers,webserver2,/m);
      // A client speaking plain HTTP gets no HTTP answer at all: no 401 asking for the password.
      await assert.rejects(
        curl(ca, [ports.stats], [`http://${NAME}:${ports.stats}/`]),
        /curl: \(\d+\)/,
      );
    });

    it('refuses TLS 1.0 and 1.1 and accepts 1.2 and 1.3, where a permissive listener accepts all four', async (t) => {
      if (reason !== undefined) return skip(t, reason);
      const control = await startPermissiveListener(t, dir, certificate);
      // Debian's OpenSSL 3.0 client offers TLS 1.0/1.1 only at security level 0.
      const legacy = ['-cipher', 'DEFAULT@SECLEVEL=0'];
      for (const [flag, protocol] of [
        ['-tls1', 'TLSv1'],
        ['-tls1_1', 'TLSv1.1'],
      ] as const) {
        const positive = await handshake(control, [flag, ...legacy]);
        assert.ok(positive.ok, `the control accepts ${protocol}: ${positive.output}`);
        assert.equal(positive.protocol, protocol);
        const probe = await handshake(ports.tls, [flag, ...legacy]);
        assert.equal(probe.ok, false, `${protocol} is refused: ${probe.output}`);
        assert.match(probe.output, /alert protocol version/, protocol);
      }
      for (const [flag, protocol] of [
        ['-tls1_2', 'TLSv1.2'],
        ['-tls1_3', 'TLSv1.3'],
      ] as const) {
        const accepted = await handshake(ports.tls, [
          flag,
          '-CAfile',
          ca.rootFile,
          '-verify_return_error',
        ]);
        assert.ok(accepted.ok, `${protocol} is accepted: ${accepted.output}`);
        assert.equal(accepted.protocol, protocol);
        assert.match(accepted.output, /^Verification: OK$/m);
      }
    });

    it('refuses weak TLS 1.2 ciphers a permissive listener accepts, and serves the intermediate ones', async (t) => {
      if (reason !== undefined) return skip(t, reason);
      const control = await startPermissiveListener(t, dir, certificate);
      // No forward secrecy (RSA key exchange), CBC modes, SHA-1 MACs, Camellia.
      const weak = [
        'AES128-SHA',
        'AES256-SHA256',
        'AES128-GCM-SHA256',
        'ECDHE-RSA-AES128-SHA',
        'ECDHE-RSA-AES256-SHA384',
        'CAMELLIA128-SHA',
      ];
      for (const cipher of weak) {
        const args = ['-tls1_2', '-cipher', `${cipher}@SECLEVEL=0`];
        const positive = await handshake(control, args);
        assert.equal(positive.cipher, cipher, `the control accepts ${cipher}: ${positive.output}`);
        const probe = await handshake(ports.tls, args);
        assert.equal(probe.ok, false, `${cipher} is refused: ${probe.output}`);
        assert.match(probe.output, /alert handshake failure/, cipher);
      }
      // The profile's ciphers for an RSA certificate, and its TLS 1.3 suites.
      for (const cipher of [
        'ECDHE-RSA-AES128-GCM-SHA256',
        'ECDHE-RSA-AES256-GCM-SHA384',
        'ECDHE-RSA-CHACHA20-POLY1305',
      ]) {
        const accepted = await handshake(ports.tls, ['-tls1_2', '-cipher', cipher]);
        assert.equal(accepted.cipher, cipher, accepted.output);
      }
      for (const suite of [
        'TLS_AES_128_GCM_SHA256',
        'TLS_AES_256_GCM_SHA384',
        'TLS_CHACHA20_POLY1305_SHA256',
      ]) {
        const accepted = await handshake(ports.tls, ['-tls1_3', '-ciphersuites', suite]);
        assert.equal(accepted.cipher, suite, accepted.output);
      }
    });

    it('a reload whose certificate cannot be read is refused, and the edge serves on as before', async (t) => {
      if (reason !== undefined) return skip(t, reason);
      const missing = join(dir, 'missing.pem');
      await assert.rejects(
        haproxy.reload({ TLS_CERT_FILE: missing }),
        /haproxy -c refused the new config, nothing reloaded:[\s\S]*missing\.pem/,
      );
      const health = await curl(ca, [ports.tls], [https('/healthcheck')]);
      assert.deepEqual([health.status, health.body], [200, 'all good from webserver1']);
      // Its settings are as they were, so the next reload works.
      await haproxy.reload();
      assert.equal(await servedFingerprint(ca, ports.tls), certificate.fingerprint256);
    });

    it('a reload with a new certificate and a moved webserver1, under HTTPS load, loses no request', async (t) => {
      if (reason !== undefined) return skip(t, reason);
      const before = await servedFingerprint(ca, ports.tls);
      assert.equal(before, certificate.fingerprint256);
      // webserver1 moves: the same service on another address.
      const moved = await startApp('webserver1-moved');
      let renewed: ServerCertificate | undefined;
      let reloadMs = 0;
      const result = await httpsLoadWhile(ports.tls, 10, async () => {
        await new Promise((resolve) => setTimeout(resolve, 3000));
        renewed = await issue(NAME);
        const started = Date.now();
        await haproxy.reload({ APP1_ADDR: hostOf(moved) });
        reloadMs = Date.now() - started;
        webserver1 = moved;
      });
      measured.reloadUnderHttpsLoad = { ...result, reloadMs };
      assert.ok(result.requests > 100, `only ${result.requests} requests ran`);
      assert.deepEqual({ ...result, requests: 0 }, NO_FAILURES);
      assert.ok(renewed !== undefined);
      assert.notEqual(renewed.fingerprint256, before);
      assert.equal(await servedFingerprint(ca, ports.tls), renewed.fingerprint256);
      const health = await curl(ca, [ports.tls], [https('/healthcheck')]);
      assert.equal(health.body, 'all good from webserver1-moved');
      // The old worker finished its requests and left.
      await pollFor(
        'the old worker to exit',
        async () =>
          /Former worker \(\d+\) exited with code 0/.test(await readFile(haproxy.logFile, 'utf8'))
            ? true
            : undefined,
        10_000,
      );
    });

    it('a SIGKILL of webserver1 under HTTPS load costs clients nothing', async (t) => {
      if (reason !== undefined) return skip(t, reason);
      const active = webserver1;
      assert.ok(active);
      const result = await httpsLoadWhile(ports.tls, 8, async () => {
        await new Promise((resolve) => setTimeout(resolve, 3000));
        await active.stop('SIGKILL');
      });
      measured.killUnderHttpsLoad = result;
      assert.ok(result.requests > 100, `only ${result.requests} requests ran`);
      assert.deepEqual({ ...result, requests: 0 }, NO_FAILURES);
      const health = await curl(ca, [ports.tls], ['--http2', https('/healthcheck')]);
      assert.deepEqual([health.status, health.body], [200, 'all good from webserver2']);
    });
  },
);

/**
 * HAProxy with the same certificate and no limits of its own beyond OpenSSL's at security level
 * 0: what the probes reach there, they could reach on the edge, were its settings not refusing.
 */
async function startPermissiveListener(
  t: TestContext,
  dir: string,
  certificate: ServerCertificate,
): Promise<number> {
  const port = await freePort();
  const config = join(dir, `permissive-${port}.cfg`);
  await writeFile(
    config,
    [
      'defaults',
      '    mode http',
      '    timeout client 5s',
      '    timeout connect 1s',
      '    timeout server 5s',
      'frontend permissive',
      `    bind 127.0.0.1:${port} ssl crt ${certificate.combinedFile} ssl-min-ver TLSv1.0 ciphers ALL:@SECLEVEL=0`,
      '    http-request return status 200',
      '',
    ].join('\n'),
  );
  const child = spawn(binary('haproxy'), ['-db', '-f', config], { stdio: 'ignore' });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if ((await handshake(port, ['-tls1_2'])).ok) return port;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error('the permissive listener did not start');
}
