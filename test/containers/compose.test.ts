import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startComposeProject, type ComposeProject } from '../helpers/compose-project.js';
import {
  buildAppImage,
  containerSkipReason,
  ensureBaseImages,
  podmanStatus,
  RUN_ID,
} from '../helpers/podman.js';

/**
 * compose.yaml up for real: docker-compose 1.29 against podman's API socket, on local stand-ins
 * for the official images (test/containers/stand-ins, listed in docs/deployment.md).
 */
const skip = await containerSkipReason(['podman', 'runc', 'debootstrap', 'docker-compose']);

const IMAGE = `localhost/users-api-compose-test:${RUN_ID}`;
const CORE = ['db-primary', 'db-replica', 'webserver1', 'webserver2', 'haproxy'] as const;

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
});
