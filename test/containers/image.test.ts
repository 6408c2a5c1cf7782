import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { pollFor } from '../helpers/external-services.js';
import {
  buildAppImage,
  containerSkipReason,
  ensureBaseImages,
  podman,
  podmanStatus,
  publishedAddress,
  RUN_ID,
} from '../helpers/podman.js';

/**
 * The image built from the repo's Dockerfile, unchanged, run by podman as users run it with
 * Docker: published port, health check, stop signal, data volume, read-only root.
 */
const skip = await containerSkipReason(['podman', 'runc', 'debootstrap']);

const IMAGE = `localhost/users-api-test:${RUN_ID}`;
const containers: string[] = [];
const volumes: string[] = [];

/** Starts a container of the image (detached, port 8888 published on a free loopback port: podman 4.3 refuses host port 0, an empty one lets it pick). */
async function start(name: string, args: readonly string[] = []): Promise<string> {
  containers.push(name);
  await podman(['run', '-d', '--name', name, '-p', '127.0.0.1::8888', ...args, IMAGE]);
  const base = `http://${await publishedAddress(name, '8888/tcp')}`;
  await pollFor(
    `${name} to answer /healthcheck`,
    async () => {
      const response = await fetch(`${base}/healthcheck`, { signal: AbortSignal.timeout(2000) });
      return response.ok ? true : undefined;
    },
    90_000,
  );
  return base;
}

async function newVolume(): Promise<string> {
  const name = `users-api-test-${RUN_ID}-${volumes.length}`;
  volumes.push(name);
  await podman(['volume', 'create', name]);
  return name;
}

/** Appends one user through the admin import, from inside the container (loopback: admin). */
async function appendUser(container: string, name: string): Promise<void> {
  const script = `fetch('http://127.0.0.1:8888/addtosql?mode=append',{method:'POST',headers:{'content-type':'text/csv'},body:'NAME,STREET,CITY,STATE,USER_DATE\\n${name},Volume Street,Podtown,NY,01/02/03\\n'}).then(async r=>{process.stdout.write(r.status+' '+await r.text());process.exit(r.ok?0:1)})`;
  await podman(['exec', container, 'node', '-e', script]);
}

async function countNamed(base: string, name: string): Promise<number> {
  const response = await fetch(`${base}/api?name=${encodeURIComponent(name)}`);
  assert.equal(response.status, 200);
  return ((await response.json()) as unknown[]).length;
}

/** uid and command of a host process, from /proc (rootful podman: no user namespace). */
async function processInfo(
  pid: string,
): Promise<{ uid: number; comm: string; children: string[] }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
  const comm = (await readFile(`/proc/${pid}/comm`, 'utf8')).trim();
  const children = (await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8'))
    .trim()
    .split(/\s+/)
    .filter(Boolean);
  return { uid, comm, children };
}

describe('the image, built from the Dockerfile and run by podman', { skip }, () => {
  before(async () => {
    await ensureBaseImages();
    const ms = await buildAppImage(IMAGE);
    const size = Number(await podman(['image', 'inspect', '--format', '{{.Size}}', IMAGE]));
    process.stderr.write(
      `# image ${IMAGE}: built in ${(ms / 1000).toFixed(1)} s, ${(size / 1e6).toFixed(0)} MB\n`,
    );
  });

  after(async () => {
    // Only what this run made, by name; -v: the anonymous volume of the image's VOLUME too.
    for (const name of containers) await podmanStatus(['rm', '-f', '-v', '-t', '0', name]);
    for (const name of volumes) await podmanStatus(['volume', 'rm', '-f', name]);
    await podmanStatus(['rmi', '-f', IMAGE]);
  });

  it('keeps its HEALTHCHECK and only production dependencies, and no build secret', async () => {
    const healthcheck = await podman([
      'image',
      'inspect',
      '--format',
      '{{json .Config.Healthcheck}}',
      IMAGE,
    ]);
    assert.match(healthcheck, /livez/);
    const env = await podman(['image', 'inspect', '--format', '{{json .Config.Env}}', IMAGE]);
    assert.doesNotMatch(env, /EXTRA_CA|secrets/);
    const listing = await podman([
      'run',
      '--rm',
      '--entrypoint',
      'node',
      IMAGE,
      '-e',
      "const fs=require('fs');process.stdout.write(JSON.stringify({lock:JSON.parse(fs.readFileSync('node_modules/.package-lock.json','utf8')).packages,secret:fs.existsSync('/run/secrets/extra_ca')}))",
    ]);
    const { lock, secret } = JSON.parse(listing) as {
      lock: Record<string, { dev?: boolean }>;
      secret: boolean;
    };
    assert.equal(secret, false);
    const repoLock = JSON.parse(await readFile('package-lock.json', 'utf8')) as {
      packages: Record<string, { dev?: boolean }>;
    };
    const devOnly = Object.entries(repoLock.packages)
      .filter(([path, entry]) => path !== '' && entry.dev === true)
      .map(([path]) => path);
    assert.ok(devOnly.includes('node_modules/typescript'));
    const shipped = Object.keys(lock);
    assert.deepEqual(
      shipped.filter((path) => devOnly.includes(path)),
      [],
      'dev dependencies in the image',
    );
    for (const needed of ['node_modules/fastify', 'node_modules/better-sqlite3']) {
      assert.ok(shipped.includes(needed), `${needed} missing from the image`);
    }
  });

  it('serves /api and /healthcheck on the published port, as node (uid 1000), healthy', async () => {
    const name = `users-api-test-${RUN_ID}-serve`;
    const base = await start(name);
    const health = await fetch(`${base}/healthcheck`);
    assert.equal(health.status, 200);
    assert.match(await health.text(), /all good/);
    const api = await fetch(`${base}/api?limit=3`);
    assert.equal(api.status, 200);
    assert.equal(((await api.json()) as unknown[]).length, 3);

    const pid = await podman(['inspect', '--format', '{{.State.Pid}}', name]);
    const init = await processInfo(pid);
    assert.equal(init.comm, 'tini');
    assert.equal(init.children.length, 1);
    const server = await processInfo(init.children[0]!);
    // Node 26 names its main thread (and so the process's comm) `node-MainThread`.
    assert.match(server.comm, /^node(-MainThread)?$/);
    assert.equal(server.uid, 1000);
    assert.equal(init.uid, 1000);

    // No systemd here: podman runs no health check on its own, so the test runs it.
    assert.equal(await podmanStatus(['healthcheck', 'run', name]), 0);
    assert.equal(
      await podman(['inspect', '--format', '{{.State.Health.Status}}', name]),
      'healthy',
    );
  });

  it('drains and exits 0 on podman stop (SIGTERM through tini), inside the stop timeout', async () => {
    const name = `users-api-test-${RUN_ID}-stop`;
    await start(name);
    // 15 s: the drain (3 s) and close fit; past it podman would SIGKILL (exit 137).
    await podman(['stop', '-t', '15', name], 60_000);
    assert.equal(await podman(['inspect', '--format', '{{.State.ExitCode}}', name]), '0');
    const logs = await podman(['logs', name]);
    assert.match(logs, /draining: healthcheck answers 503/);
    assert.match(logs, /closing: no new connections/);
  });

  it('keeps its data on the volume when the container is replaced, also --read-only', async () => {
    const volume = await newVolume();
    const first = `users-api-test-${RUN_ID}-vol1`;
    const base1 = await start(first, ['-v', `${volume}:/app/data`]);
    await appendUser(first, 'Vera Volume');
    assert.equal(await countNamed(base1, 'Vera Volume'), 1);
    await podman(['stop', '-t', '15', first], 60_000);
    await podman(['rm', first]);

    // The replacement: root filesystem read-only, writable only the volume and a tmpfs /tmp.
    const second = `users-api-test-${RUN_ID}-vol2`;
    const base2 = await start(second, [
      '--read-only',
      '--tmpfs',
      '/tmp',
      '-v',
      `${volume}:/app/data`,
    ]);
    assert.equal(await countNamed(base2, 'Vera Volume'), 1, 'the first container’s user');
    const total = (await (await fetch(`${base2}/api/count`)).json()) as { count: number };
    assert.equal(total.count, 1001, 'sample data imported once, plus one');
    await appendUser(second, 'Rita Readonly');
    assert.equal(await countNamed(base2, 'Rita Readonly'), 1);
    assert.notEqual(await podmanStatus(['exec', second, 'touch', '/app/written']), 0);
    assert.equal(await podmanStatus(['healthcheck', 'run', second]), 0);
    await podman(['stop', '-t', '15', second], 60_000);
    assert.equal(await podman(['inspect', '--format', '{{.State.ExitCode}}', second]), '0');
  });
});
