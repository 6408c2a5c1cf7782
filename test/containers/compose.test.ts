import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { startComposeProject, type ComposeProject } from '../helpers/compose-project.js';
import {
  buildAppImage,
  CONTAINERS_CONF,
  containerSkipReason,
  ensureBaseImages,
  podman,
  podmanStatus,
  RUN_ID,
} from '../helpers/podman.js';

const run = promisify(execFile);

/**
 * compose.yaml up for real: docker-compose 1.29 against podman's API socket, on local stand-ins
 * for the official images (test/containers/stand-ins, listed in docs/deployment.md).
 */
const skip = await containerSkipReason(['podman', 'runc', 'debootstrap', 'docker-compose']);

const IMAGE = `localhost/users-api-compose-test:${RUN_ID}`;
const CORE = ['db-primary', 'db-replica', 'webserver1', 'webserver2', 'haproxy'] as const;

async function servedBy(project: ComposeProject): Promise<string> {
  const response = await fetch(`${project.lbUrl}/healthcheck`, {
    signal: AbortSignal.timeout(2000),
  });
  return `${response.status} ${await response.text()}`;
}

/** `podman exec -i` with `input` on the command's stdin: a secret never on a command line. */
async function podmanInput(args: readonly string[], input: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('podman', ['exec', '-i', ...args], {
      env: { ...process.env, CONTAINERS_CONF },
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: 60_000,
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0
        ? resolve(out.trim())
        : reject(new Error(`podman exec ${args[0]}: ${code} ${err}`)),
    );
    child.stdin.end(input);
  });
}

/** Polls until `condition` holds; returns the ms it took. Bounded by `limitMs`. */
async function waitFor(condition: () => Promise<boolean>, what: string, limitMs: number) {
  const start = Date.now();
  while (Date.now() - start < limitMs) {
    if (await condition().catch(() => false)) return Date.now() - start;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`not within ${limitMs} ms: ${what}`);
}

/**
 * GET /api through HAProxy from 4 clients until stopped, at most 20 000 requests or 180 s.
 * Resolves with the count of requests and of failures (an error or a status other than 200).
 */
function load(project: ComposeProject) {
  let stopped = false;
  let requests = 0;
  let failures = 0;
  const failed: string[] = [];
  const deadline = Date.now() + 180_000;
  const client = async () => {
    while (!stopped && requests < 20_000 && Date.now() < deadline) {
      requests++;
      try {
        const response = await fetch(`${project.lbUrl}/api?limit=5`, {
          signal: AbortSignal.timeout(15_000),
        });
        await response.arrayBuffer();
        if (response.status !== 200) {
          failures++;
          failed.push(String(response.status));
        }
      } catch (error) {
        failures++;
        failed.push(String(error));
      }
    }
  };
  const clients = Promise.all([client(), client(), client(), client()]);
  return {
    async stop() {
      stopped = true;
      await clients;
      return { requests, failures, failed: failed.slice(0, 5) };
    },
  };
}

describe('compose.yaml, up for real', { skip }, () => {
  let project: ComposeProject;

  before(async () => {
    await ensureBaseImages(true);
    await buildAppImage(IMAGE);
    project = await startComposeProject(IMAGE);
    project.startHealthTicker();
    const started = Date.now();
    await project.compose(['up', '-d', '--no-build']);
    await project.waitHealthy(CORE, 300_000);
    process.stderr.write(
      `# compose: healthy ${((Date.now() - started) / 1000).toFixed(1)} s after up\n`,
    );
  });

  after(async () => {
    await project?.close();
    await podmanStatus(['rmi', '-f', IMAGE]);
  });

  it('serves /api and /healthcheck through HAProxy, from webserver1', async () => {
    const health = await fetch(`${project.lbUrl}/healthcheck`);
    assert.equal(health.status, 200);
    assert.match(await health.text(), /all good from webserver1/);
    const count = await fetch(`${project.lbUrl}/api/count`);
    assert.deepEqual(await count.json(), { count: 1000 });
  });

  it('replicates to the replica; the sample data was imported once, by one web server', async () => {
    const rows = await waitFor(
      async () =>
        // As root over the socket, the password (set from db_root_password_hash) given on stdin.
        (await podmanInput(
          [
            project.container('db-replica'),
            'mariadb',
            '--defaults-extra-file=/dev/stdin',
            '-uroot',
            '-N',
            '-e',
            'SELECT COUNT(*) FROM users.users',
          ],
          `[client]\npassword=${project.secrets.db_root_password}\n`,
        )) === '1000',
      'the replica to hold the 1000 users',
      30_000,
    );
    assert.ok(rows >= 0);
    const logs1 = await podman(['logs', project.container('webserver1')]);
    const logs2 = await podman(['logs', project.container('webserver2')]);
    // Both start with IMPORT_ON_START=if-empty at the same moment: whichever gets the table
    // first imports (webserver1 in a quiet run), the other finds it filled. Exactly one copy.
    const imported = [logs1, logs2].map((l) => (l.match(/imported the data file/g) ?? []).length);
    const skipped = [logs1, logs2].map((l) => (l.match(/start-up import skipped/g) ?? []).length);
    assert.equal(imported[0]! + imported[1]!, 1, `imports: ${imported.join(', ')}`);
    assert.deepEqual(
      skipped,
      imported.map((n) => 1 - n),
    );
  });

  it('asks for a password on the stats page, and takes the secret file’s', async () => {
    const anonymous = await fetch(`${project.statsUrl}/`);
    assert.equal(anonymous.status, 401);
    assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Basic/);
    const basic = (password: string) =>
      `Basic ${Buffer.from(`admin:${password}`).toString('base64')}`;
    const wrong = await fetch(`${project.statsUrl}/`, {
      headers: { authorization: basic(`${project.secrets.haproxy_stats_password}x`) },
    });
    assert.equal(wrong.status, 401);
    const authorised = await fetch(`${project.statsUrl}/`, {
      headers: { authorization: basic(project.secrets.haproxy_stats_password!) },
    });
    assert.equal(authorised.status, 200);
  });

  it('asks for the metrics token from the secret file on /metrics', async () => {
    // From inside webserver1 (HAProxy keeps /metrics to monitoring networks): the token is read
    // from the mounted secret there, so it is on no command line either.
    const status = async (withToken: boolean) =>
      podman([
        'exec',
        project.container('webserver1'),
        'node',
        '-e',
        `const t=require('fs').readFileSync('/run/secrets/metrics_token','utf8');fetch('http://127.0.0.1:8888/metrics',{headers:${withToken} ? {authorization:'Bearer '+t} : {}}).then(r=>console.log(r.status))`,
      ]);
    assert.equal(await status(false), '401');
    assert.equal(await status(true), '200');
  });

  it("shows HAProxy's view in an app's status feed: webserver1 takes traffic, webserver2 waits", async () => {
    // From inside webserver2 (the backup), with the metrics token from its mounted secret: the
    // feed reads HAProxy's stats with HAPROXY_STATS_URL and the haproxy_stats_password secret.
    let haproxy = '';
    await waitFor(
      async () => {
        const raw = await podman([
          'exec',
          project.container('webserver2'),
          'node',
          '-e',
          "const t=require('fs').readFileSync('/run/secrets/metrics_token','utf8');fetch('http://127.0.0.1:8888/status.json',{headers:{authorization:'Bearer '+t}}).then(r=>r.json()).then(s=>console.log(JSON.stringify({haproxy:s.haproxy,problems:s.problems})))",
        ]);
        haproxy = raw;
        const seen = JSON.parse(raw) as { haproxy?: { servers: { status: string }[] } };
        return seen.haproxy?.servers.every((server) => server.status === 'UP') === true;
      },
      "the status feed shows HAProxy's servers up",
      30_000,
    ).catch((error: Error) => assert.fail(`${error.message}; last: ${haproxy}`));
    assert.deepEqual((JSON.parse(haproxy) as { haproxy: unknown }).haproxy, {
      active: 'webserver1',
      servers: [
        { name: 'webserver1', status: 'UP', backup: false },
        { name: 'webserver2', status: 'UP', backup: true },
      ],
    });
  });

  it('with the monitoring profile, Prometheus scrapes both apps, HAProxy and blackbox: all up', async () => {
    await project.compose(['--profile', 'monitoring', 'up', '-d', '--no-build']);
    await project.waitHealthy(['prometheus', 'blackbox', 'alertmanager'], 180_000);
    let targets: {
      labels: { job: string; instance: string };
      health: string;
      lastError: string;
    }[] = [];
    await waitFor(
      async () => {
        const response = await fetch(`${project.prometheusUrl}/api/v1/targets?state=active`);
        targets = ((await response.json()) as { data: { activeTargets: typeof targets } }).data
          .activeTargets;
        return targets.length > 0 && targets.every((target) => target.health === 'up');
      },
      'every Prometheus target up',
      90_000,
    ).catch((error: unknown) => {
      throw new Error(
        `${String(error)}: ${JSON.stringify(targets.map((t) => [t.labels.instance, t.health, t.lastError]))}`,
      );
    });
    assert.deepEqual(
      targets.map((target) => `${target.labels.job} ${target.labels.instance}`).sort(),
      [
        'blackbox blackbox:9115',
        'blackbox-healthcheck http://haproxy:80/healthcheck',
        'haproxy haproxy:8080',
        'users-api webserver1:8888',
        'users-api webserver2:8888',
      ],
    );
  });

  it('moves to webserver2 with no failed request when webserver1 is killed, and back', async () => {
    const running = load(project);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    await podman(['kill', project.container('webserver1')]);
    const movedMs = await waitFor(
      async () => /all good from webserver2/.test(await servedBy(project)),
      'traffic on webserver2',
      20_000,
    );
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const killedAt = Date.now();
    // restart: unless-stopped may already have started it again; start it if not.
    await podmanStatus(['start', project.container('webserver1')]);
    const backMs = await waitFor(
      async () => /all good from webserver1/.test(await servedBy(project)),
      'traffic back on webserver1',
      120_000,
    );
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const result = await running.stop();
    process.stderr.write(
      `# kill webserver1: on webserver2 after ${movedMs} ms, back ${Date.now() - killedAt - 1000} ms after start (${backMs}), ${result.requests} requests, ${result.failures} failed\n`,
    );
    assert.ok(result.requests > 0);
    assert.deepEqual(result.failed, []);
  });

  it('moves to webserver2 when webserver1 is cut off the network, within the check budget', async () => {
    const network = `${project.name}_default`;
    const container = project.container('webserver1');
    await podman(['network', 'disconnect', network, container]);
    try {
      // haproxy.cfg: a check every 500 ms, 1 s timeout, down after 2 failures: about 3 s.
      const movedMs = await waitFor(
        async () => /all good from webserver2/.test(await servedBy(project)),
        'traffic on webserver2 after the partition',
        10_000,
      );
      process.stderr.write(`# partition of webserver1: on webserver2 after ${movedMs} ms\n`);
    } finally {
      // The service name is a network alias compose set at creation: a reconnect must give it
      // again (docker as well), or `webserver1` no longer resolves for HAProxy.
      await podman(['network', 'connect', '--alias', 'webserver1', network, container]);
    }
    const backMs = await waitFor(
      async () => /all good from webserver1/.test(await servedBy(project)),
      'traffic back on webserver1 after the partition',
      60_000,
    ).catch(async (error: unknown) => {
      const inside = await podman([
        'exec',
        container,
        'node',
        '-e',
        "fetch('http://127.0.0.1:8888/healthcheck').then(async r=>console.log(r.status, await r.text()),e=>console.log(String(e)))",
      ]).catch((e: unknown) => String(e));
      const ip = await podman([
        'inspect',
        '--format',
        '{{json .NetworkSettings.Networks}}',
        container,
      ]).catch((e: unknown) => String(e));
      const resolved = await podman([
        'exec',
        project.container('haproxy'),
        'getent',
        'hosts',
        'webserver1',
      ]).catch((e: unknown) => String(e));
      throw new Error(
        `${String(error)}; webserver1 itself: ${inside}; its networks: ${ip}; haproxy resolves: ${resolved}; lb: ${await servedBy(project).catch(String)}`,
      );
    });
    process.stderr.write(`# partition healed: back on webserver1 after ${backMs} ms\n`);
  });

  it('takes a verified backup in the sidecar, listed by the web servers', async () => {
    let raw = '';
    await waitFor(
      async () => {
        raw = await podman([
          'exec',
          project.container('backup'),
          'cat',
          '/backups/last-success.json',
        ]);
        return true;
      },
      'the sidecar’s first backup',
      120_000,
    );
    const status = JSON.parse(raw) as { at: string; file: string; rows: number };
    // compose.yaml's health check of the sidecar reads that file.
    // compose.yaml's health check of the sidecar reads that file. Retried: the harness's own
    // round of checks may be running the same check right now.
    await waitFor(
      async () => (await podmanStatus(['healthcheck', 'run', project.container('backup')])) === 0,
      'the sidecar’s health check to pass',
      30_000,
    ).catch(async (error: unknown) => {
      const state = await podman([
        'inspect',
        '--format',
        '{{json .State.Health}}',
        project.container('backup'),
      ]);
      throw new Error(`${String(error)}: ${state.slice(0, 1500)}`);
    });
    const listing = await fetch(`${project.lbUrl}/admin/backups`, {
      headers: { authorization: `Bearer ${project.secrets.admin_token}` },
    });
    assert.equal(listing.status, 200);
    const { backups } = (await listing.json()) as {
      backups: { file: string; manifest: { rows: number } }[];
    };
    const listed = backups.find((backup) => backup.file === status.file);
    assert.ok(listed, `${status.file} not listed: ${JSON.stringify(backups)}`);
    assert.equal(listed.manifest.rows, status.rows);
  });
  it('leaks no secret: not in podman inspect, a process environment or command line, nor a log', async () => {
    // The values themselves (the MariaDB hashes and HAProxy's crypt hash are not passwords).
    const values = Object.entries(project.secrets).filter(
      ([name]) => !name.endsWith('_hash') && !name.endsWith('_userlist'),
    );
    assert.deepEqual(values.map(([name]) => name).sort(), [
      'admin_token',
      'db_app_password',
      'db_replication_password',
      'db_root_password',
      'haproxy_stats_password',
      'metrics_token',
    ]);
    const leaks: string[] = [];
    const look = (where: string, text: string) => {
      for (const [name, value] of values) {
        assert.ok(value.length >= 32, name);
        if (text.includes(value)) leaks.push(`${name} in ${where}`);
      }
    };
    const services = [...CORE, 'backup', 'prometheus', 'blackbox', 'alertmanager'] as const;
    let processes = 0;
    let sawSecretFileVariable = false;
    for (const service of services) {
      const container = project.container(service);
      look(`podman inspect ${service}`, await podman(['inspect', container]));
      const logs = await run('podman', ['logs', container], {
        env: { ...process.env, CONTAINERS_CONF },
        maxBuffer: 64 * 1024 * 1024,
      });
      assert.ok(`${logs.stdout}${logs.stderr}`.length > 0, `${service} logged nothing`);
      look(`podman logs ${service}`, `${logs.stdout}${logs.stderr}`);
      // Every process of the container, read from the host's /proc by its host pid.
      const pids = (await podman(['top', container, 'hpid']))
        .split('\n')
        .slice(1)
        .map((line) => line.trim())
        .filter((pid) => /^\d+$/.test(pid));
      assert.ok(pids.length > 0, `${service}: no process`);
      for (const pid of pids) {
        const environ = await readFile(`/proc/${pid}/environ`, 'latin1').catch(() => undefined);
        const cmdline = await readFile(`/proc/${pid}/cmdline`, 'latin1').catch(() => undefined);
        if (environ === undefined || cmdline === undefined) continue; // gone meanwhile
        processes++;
        look(`the environment of ${service} pid ${pid}`, environ);
        look(`the command line of ${service} pid ${pid}`, cmdline);
        if (environ.split('\0').includes('ADMIN_TOKEN_FILE=/run/secrets/admin_token')) {
          sawSecretFileVariable = true;
        }
      }
    }
    // The reading works: the apps' processes name the file, and the file is mounted with the value.
    assert.ok(sawSecretFileVariable, 'no app process environment read');
    assert.ok(processes >= services.length, `${processes} processes read`);
    assert.equal(
      await podman(['exec', project.container('webserver2'), 'cat', '/run/secrets/admin_token']),
      project.secrets.admin_token,
    );
    assert.deepEqual(leaks, []);
  });
});
