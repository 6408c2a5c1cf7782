import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { it } from 'node:test';
import { parse } from 'yaml';
import { REPO_ROOT } from '../helpers/paths.js';

/**
 * Grafana is not packaged here, so its provisioning is checked statically: the data source is
 * the compose project's Prometheus, the provider loads the folder the docs mount the dashboard
 * in, and every panel of the dashboard reads the provisioned data source's type.
 */
const read = (path: string) => readFile(join(REPO_ROOT, path), 'utf8');

it('provisions the dashboard and the compose Prometheus as its data source', async () => {
  const sources = parse(await read('deploy/grafana/provisioning/datasources/prometheus.yml')) as {
    apiVersion: number;
    datasources: { type: string; url: string; isDefault?: boolean }[];
  };
  assert.equal(sources.apiVersion, 1);
  assert.equal(sources.datasources.length, 1);
  const [source] = sources.datasources;
  assert.equal(source!.type, 'prometheus');
  assert.equal(source!.isDefault, true);

  const compose = parse(await read('compose.yaml')) as {
    services: Record<string, { ports?: string[]; healthcheck?: { test: string[] } }>;
  };
  const url = new URL(source!.url);
  const service = compose.services[url.hostname];
  assert.ok(service, `no compose service ${url.hostname}`);
  assert.ok(
    service.ports?.some((port) => port.endsWith(`:${url.port}`)) &&
      service.healthcheck?.test.join(' ').includes(`:${url.port}/`),
    `${url.hostname} serves no port ${url.port}`,
  );

  const providers = parse(await read('deploy/grafana/provisioning/dashboards/users-api.yml')) as {
    apiVersion: number;
    providers: { type: string; options: { path: string } }[];
  };
  assert.equal(providers.apiVersion, 1);
  assert.equal(providers.providers[0]!.type, 'file');
  const folder = providers.providers[0]!.options.path;
  const docs = await read('docs/deployment.md');
  assert.ok(
    docs.includes(`users-api-dashboard.json:${folder}/users-api-dashboard.json:ro`),
    `docs/deployment.md mounts the dashboard elsewhere than ${folder}`,
  );
  assert.ok(docs.includes('deploy/grafana/provisioning:/etc/grafana/provisioning:ro'));

  const dashboard = JSON.parse(await read('deploy/grafana/users-api-dashboard.json')) as {
    uid: string;
    templating: { list: { name: string; type: string; query: string }[] };
    panels: { title: string; datasource?: { type?: string; uid?: string } }[];
  };
  const variable = dashboard.templating.list.find((v) => v.type === 'datasource');
  assert.equal(variable?.query, source!.type);
  assert.ok(dashboard.panels.length > 0);
  for (const panel of dashboard.panels) {
    assert.equal(panel.datasource?.uid, `\${${variable.name}}`, panel.title);
  }
});
