import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { access, constants } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from './paths.js';

const run = promisify(execFile);

/** podman's settings for this host (runc, no default ulimits): test/containers/containers.conf. */
export const CONTAINERS_CONF = join(REPO_ROOT, 'test/containers/containers.conf');
const env = { ...process.env, CONTAINERS_CONF };

/**
 * The host's CA bundle, handed to image builds as the optional `extra_ca` build secret: this
 * network inspects TLS and only the host's store trusts it (docs/deployment.md).
 */
export const HOST_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

/** A name part unique to this run, so parallel runs never share a container, volume or image. */
export const RUN_ID = `${process.pid}-${randomBytes(3).toString('hex')}`;

/**
 * Which of `names` are not on PATH (nor in /usr/sbin). Under CI=true any missing one is a
 * failure; locally the suite skips loudly: returns the skip reason, or undefined to run.
 */
export async function containerSkipReason(names: readonly string[]): Promise<string | undefined> {
  const folders = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/bin'];
  const missing: string[] = [];
  for (const name of names) {
    const found = await Promise.any(
      folders.map((folder) => access(join(folder, name), constants.X_OK)),
    ).then(
      () => true,
      () => false,
    );
    if (!found) missing.push(name);
  }
  if (missing.length === 0) return undefined;
  const message = `container tests need ${missing.join(', ')} (apt-get install -y podman runc debootstrap docker-compose)`;
  if (process.env.CI === 'true') throw new Error(`${message}: required under CI=true`);
  process.stderr.write(`\n!!! SKIPPING container tests: ${message}\n\n`);
  return message;
}

/** Runs podman with this repo's containers.conf; rejects with its stderr on a non-zero exit. */
export async function podman(args: readonly string[], timeoutMs = 120_000): Promise<string> {
  try {
    const { stdout } = await run('podman', args, {
      env,
      timeout: timeoutMs,
      maxBuffer: 64 * 1024 * 1024,
    });
    return stdout.trim();
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new Error(`podman ${args.join(' ')}: ${e.stderr?.trim() || e.message}`, {
      cause: error,
    });
  }
}

/** The exit code of a podman command (no throw), for checks whose failure is the answer. */
export async function podmanStatus(args: readonly string[]): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn('podman', args, { env, stdio: 'ignore' });
    child.on('close', (code) => resolve(code ?? -1));
  });
}

/** Runs a script of this repo to its end, its output on stderr; rejects on a non-zero exit. */
export async function runScript(args: readonly string[], timeoutMs: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const child = spawn(args[0]!, args.slice(1), {
      cwd: REPO_ROOT,
      env,
      stdio: ['ignore', 'inherit', 'inherit'],
      timeout: timeoutMs,
    });
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new Error(`${args.join(' ')} exited ${code}`)),
    );
  });
}

/** Makes the local base images (kept in podman's storage between runs: only missing ones). */
export async function ensureBaseImages(withStandIns = false): Promise<void> {
  await runScript(
    ['scripts/container-bases.sh', ...(withStandIns ? ['stand-ins'] : [])],
    15 * 60_000,
  );
}

/**
 * Builds the repo's Dockerfile, unchanged, as `tag` (docker format keeps HEALTHCHECK), with the
 * host's CA bundle as the optional `extra_ca` build secret when there is one. Returns the ms.
 */
export async function buildAppImage(tag: string): Promise<number> {
  const secret = await access(HOST_CA_BUNDLE).then(
    () => ['--secret', `id=extra_ca,src=${HOST_CA_BUNDLE}`],
    () => [],
  );
  const started = Date.now();
  await runScript(
    ['podman', 'build', '--quiet', '--format', 'docker', ...secret, '-t', tag, '.'],
    15 * 60_000,
  );
  return Date.now() - started;
}

/** The host address podman published a container port on, e.g. `127.0.0.1:41234`. */
export async function publishedAddress(container: string, port: string): Promise<string> {
  const lines = (await podman(['port', container, port])).split('\n');
  const address = lines.find((line) => line.startsWith('127.0.0.1:'));
  if (address === undefined) throw new Error(`${container} publishes ${port} on no loopback port`);
  return address;
}
