import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './external-services.js';
import { REPO_ROOT } from './paths.js';
import { CONTAINERS_CONF, podman, podmanStatus, RUN_ID } from './podman.js';

const run = promisify(execFile);

/**
 * compose.yaml run by docker-compose 1.29 against podman's Docker API (`podman system service`
 * on a socket of this run), under a project name of this run, on free loopback ports.
 */
export interface ComposeProject {
  name: string;
  /** Values compose.yaml reads from the environment (.env's role); no secret among them. */
  env: Record<string, string>;
  /** The folder `npm run secrets:init` filled for this run (SECRETS_DIR). */
  secretsDir: string;
  /** Each secret file's content, by file name (admin_token, haproxy_stats_password, …). */
  secrets: Record<string, string>;
  lbUrl: string;
  statsUrl: string;
  prometheusUrl: string;
  compose: (args: readonly string[], timeoutMs?: number) => Promise<string>;
  /** The container of a service (compose v1 names it PROJECT_SERVICE_1). */
  container: (service: string) => string;
  /** Runs every health check of the project in turn, again 1 s after (no systemd here). */
  startHealthTicker: () => void;
  /** Waits until each of `services` reports healthy. */
  waitHealthy: (services: readonly string[], limitMs: number) => Promise<void>;
  close: () => Promise<void>;
}

export async function startComposeProject(image: string): Promise<ComposeProject> {
  const dir = await mkdtemp(join(tmpdir(), 'users-api-compose-'));
  // The secret files, made as an operator makes them (npm run secrets:init -- DIR).
  const secretsDir = join(dir, 'secrets');
  await run('npm', ['run', '--silent', 'secrets:init', '--', secretsDir], { cwd: REPO_ROOT });
  const secrets: Record<string, string> = {};
  for (const name of await readdir(secretsDir)) {
    secrets[name] = await readFile(join(secretsDir, name), 'utf8');
  }
  const socket = join(dir, 'podman.sock');
  const service: ChildProcess = spawn(
    'podman',
    ['system', 'service', '--time=0', `unix://${socket}`],
    { env: { ...process.env, CONTAINERS_CONF }, stdio: 'ignore' },
  );
  const serviceExited = once(service, 'close');
  const name = `usersapi${RUN_ID.replace(/[^a-z0-9]/g, '')}`;
  const [http, https, stats, prom, alert] = await Promise.all(
    [1, 2, 3, 4, 5].map(() => freePort()),
  );
  const env: Record<string, string> = {
    USERS_API_IMAGE: image,
    PUBLISH_ADDR: '127.0.0.1',
    PUBLISH_HTTP_PORT: String(http),
    PUBLISH_HTTPS_PORT: String(https),
    PUBLISH_STATS_PORT: String(stats),
    PUBLISH_PROMETHEUS_PORT: String(prom),
    PUBLISH_ALERTMANAGER_PORT: String(alert),
    SECRETS_DIR: secretsDir,
  };
  const file = join(REPO_ROOT, 'compose.yaml');
  const composeEnv = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: process.env.HOME ?? '/root',
    DOCKER_HOST: `unix://${socket}`,
    COMPOSE_PROJECT_NAME: name,
    // compose 1.29's HTTP client waits 60 s by default; a slow `up` on 2 shared cores needs more.
    COMPOSE_HTTP_TIMEOUT: '300',
    ...env,
  };
  const compose = async (args: readonly string[], timeoutMs = 600_000) => {
    try {
      const { stdout, stderr } = await run(
        'docker-compose',
        ['-f', file, '--project-directory', REPO_ROOT, ...args],
        { cwd: REPO_ROOT, env: composeEnv, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
      );
      return `${stdout}${stderr}`;
    } catch (error) {
      const e = error as { stdout?: string; stderr?: string; message: string };
      throw new Error(`docker-compose ${args.join(' ')}: ${e.stderr ?? ''}${e.stdout ?? ''}`, {
        cause: error,
      });
    }
  };
  // The socket takes a moment to appear.
  for (let i = 0; i < 100; i++) {
    if ((await podmanStatus(['--url', `unix://${socket}`, 'version'])) === 0) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }

  let ticking: Promise<void> | undefined;
  let stopTicking = false;
  const containerIds = async () =>
    (await podman(['ps', '-q', '--filter', `label=com.docker.compose.project=${name}`]))
      .split('\n')
      .filter(Boolean);
  const tick = async () => {
    // One at a time: on 2 shared cores, six checks at once (each a podman, a runc exec and a
    // node) overran their 3 s timeouts and marked healthy services unhealthy.
    const ids = await containerIds().catch(() => []);
    for (const id of ids) await podmanStatus(['healthcheck', 'run', id]);
  };
  const container = (serviceName: string) => `${name}_${serviceName}_1`;

  return {
    name,
    env,
    secretsDir,
    secrets,
    lbUrl: `http://127.0.0.1:${http}`,
    statsUrl: `http://127.0.0.1:${stats}`,
    prometheusUrl: `http://127.0.0.1:${prom}`,
    compose,
    container,
    startHealthTicker() {
      if (ticking !== undefined) return;
      ticking = (async () => {
        while (!stopTicking) {
          await tick();
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
      })();
    },
    async waitHealthy(services, limitMs) {
      const deadline = Date.now() + limitMs;
      for (;;) {
        const states = await Promise.all(
          services.map((s) =>
            podman(['inspect', '--format', '{{.State.Health.Status}}', container(s)]).catch(
              () => 'missing',
            ),
          ),
        );
        if (states.every((state) => state === 'healthy')) return;
        if (Date.now() > deadline) {
          throw new Error(
            `not healthy in time: ${services.map((s, i) => `${s}=${states[i]}`).join(' ')}`,
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    },
    async close() {
      stopTicking = true;
      await ticking;
      await compose(['--profile', 'monitoring', 'down', '-v', '--timeout', '10']).catch(
        (error: unknown) => process.stderr.write(`compose down: ${String(error)}\n`),
      );
      if (service.exitCode === null && service.signalCode === null) service.kill('SIGTERM');
      await serviceExited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}
