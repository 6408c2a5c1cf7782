import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { startBuiltServer, type ChildServer } from '../helpers/child-server.js';
import { freePort, pollFor, requireBinary, startService } from '../helpers/external-services.js';
import { REPO_ROOT } from '../helpers/paths.js';

const DEPLOY = join(REPO_ROOT, 'deploy/prometheus');
const run = promisify(execFile);

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'users-api-prom-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * The service as users run it (the built binary) on a free port with its own database;
 * `env` adds to or replaces the SQLite defaults.
 */
async function startApp(
  t: TestContext,
  dir: string,
  env: NodeJS.ProcessEnv = {},
): Promise<ChildServer> {
  return startBuiltServer(t, dir, {
    SERVER_NAME: 'webserver1',
    DATABASE_URL: `sqlite:${join(dir, 'users.db')}`,
    DATA_FILE: join(REPO_ROOT, 'data/users.csv'),
    ...env,
  });
}

/** Each alert rule's name and expression, read from alerts.yml (single-line or `|` blocks). */
async function readAlertRules(): Promise<{ alert: string; expr: string }[]> {
  const lines = (await readFile(join(DEPLOY, 'alerts.yml'), 'utf8')).split('\n');
  const rules: { alert: string; expr: string }[] = [];
  lines.forEach((line, index) => {
    const alert = /^\s*- alert: (\S+)$/.exec(line)?.[1];
    if (alert !== undefined) rules.push({ alert, expr: '' });
    const expr = /^(\s*)expr: (.*)$/.exec(line);
    if (expr === null) return;
    let text = expr[2]!;
    if (text === '|') {
      const indent = expr[1]!.length;
      text = '';
      for (const next of lines.slice(index + 1)) {
        if (next.trim() !== '' && next.length - next.trimStart().length <= indent) break;
        text += `${next}\n`;
      }
    }
    rules.at(-1)!.expr = text;
  });
  return rules;
}

const PROMQL_WORDS = new Set(
  ['and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right'].concat([
    'bool',
    'offset',
    'time',
  ]),
);

/** Metric names in a PromQL expression: identifiers that are not functions, labels or keywords. */
function metricNames(expr: string): string[] {
  const bare = expr
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\b(by|without|on|ignoring)\s*\([^)]*\)/g, ' ')
    .replace(/"[^"]*"|'[^']*'/g, ' ');
  return [...bare.matchAll(/\b([a-zA-Z_:][\w:]*)\b(?!\s*\()/g)]
    .map((match) => match[1]!)
    .filter((name) => !PROMQL_WORDS.has(name) && !/^\d/.test(name));
}

/** Names a /metrics text exposes: sample names and HELP names (series without samples yet). */
function exposedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const match = /^(?:# HELP )?([a-zA-Z_:][\w:]*)/.exec(line);
    if (match !== null && !line.startsWith('# TYPE')) names.add(match[1]!);
  }
  return names;
}

describe('deploy/prometheus', () => {
  it('passes promtool check config, check rules and the rule unit tests', async (t) => {
    const promtool = await requireBinary(t, ['promtool'], 'prometheus');
    if (promtool === undefined) return;
    // check config also checks the rule files it loads; check rules on its own is what an
    // operator runs after editing alerts.yml, so it must pass too. It also wants the files the
    // scrape configs read (the compose secrets under /run/secrets/): a temp copy of the folder
    // points them at files of its own, the repository is left as it is.
    const dir = await tempDir(t);
    const original = await readFile(join(DEPLOY, 'prometheus.yml'), 'utf8');
    const secrets = [...new Set(original.match(/\/run\/secrets\/[a-z0-9_]+/g))];
    assert.deepEqual(secrets.sort(), [
      '/run/secrets/haproxy_stats_password',
      '/run/secrets/metrics_token',
    ]);
    await mkdir(join(dir, 'secrets'));
    for (const secret of secrets) {
      await writeFile(join(dir, 'secrets', basename(secret)), 'a-secret-value-for-promtool');
    }
    await writeFile(
      join(dir, 'prometheus.yml'),
      original.replaceAll('/run/secrets/', `${join(dir, 'secrets')}/`),
    );
    for (const file of ['alerts.yml', 'alerts.test.yml'])
      await copyFile(join(DEPLOY, file), join(dir, file));
    const config = await run(promtool, ['check', 'config', 'prometheus.yml'], { cwd: dir });
    assert.match(config.stdout, /SUCCESS: 8 rules found/);
    const rules = await run(promtool, ['check', 'rules', 'alerts.yml'], { cwd: DEPLOY });
    assert.match(rules.stdout, /SUCCESS: 8 rules found/);
    const unit = await run(promtool, ['test', 'rules', 'alerts.test.yml'], { cwd: DEPLOY });
    assert.match(unit.stdout, /SUCCESS/);
  });

  it('has a unit test that fires and one that clears every alert', async () => {
    const tests = await readFile(join(DEPLOY, 'alerts.test.yml'), 'utf8');
    const rules = await readAlertRules();
    assert.deepEqual(
      rules.map((rule) => rule.alert),
      [
        'UsersApiInstanceDown',
        'PublicHealthProbeFailing',
        'AllReplicasUnhealthy',
        'ReplicaLagHigh',
        'HighErrorRatio',
        'HighP99Latency',
        'BackupTooOld',
        'HaproxyServingFromBackup',
      ],
    );
    for (const { alert } of rules) {
      assert.match(
        tests,
        new RegExp(
          `alertname: ${alert}\\n\\s+eval_time: \\S+\\n\\s+exp_alerts:\\n\\s+- exp_labels`,
        ),
        alert,
      );
      assert.match(
        tests,
        new RegExp(`\\{ alertname: ${alert}, eval_time: \\S+, exp_alerts: \\[\\] \\}`),
        alert,
      );
    }
  });

  it('selects only jobs that prometheus.yml scrapes', async () => {
    const config = parse(await readFile(join(DEPLOY, 'prometheus.yml'), 'utf8')) as {
      scrape_configs: { job_name: string }[];
    };
    const jobs = new Set(config.scrape_configs.map((scrape) => scrape.job_name));
    const selected = (await readAlertRules()).flatMap(({ alert, expr }) =>
      [...expr.matchAll(/\bjob\s*=\s*"([^"]*)"/g)].map((match) => ({ alert, job: match[1]! })),
    );
    assert.ok(selected.length > 0, 'no job="…" selector found: has the parser broken?');
    for (const { alert, job } of selected) {
      assert.ok(
        jobs.has(job),
        `${alert} selects job="${job}", which prometheus.yml does not scrape`,
      );
    }
  });

  it('has valid blackbox_exporter and Alertmanager configs', async (t) => {
    const blackbox = await requireBinary(
      t,
      ['prometheus-blackbox-exporter', 'blackbox_exporter'],
      'prometheus-blackbox-exporter',
    );
    const amtool = await requireBinary(t, ['amtool'], 'prometheus-alertmanager');
    if (blackbox === undefined || amtool === undefined) return;
    await run(blackbox, ['--config.check', `--config.file=${join(DEPLOY, 'blackbox.yml')}`]);
    const checked = await run(amtool, ['check-config', join(DEPLOY, 'alertmanager.yml')]);
    assert.match(checked.stdout, /SUCCESS/);
  });

  it('uses only metric names the service, HAProxy and blackbox_exporter really export', async (t) => {
    const haproxy = await requireBinary(t, ['haproxy'], 'haproxy');
    const blackbox = await requireBinary(
      t,
      ['prometheus-blackbox-exporter', 'blackbox_exporter'],
      'prometheus-blackbox-exporter',
    );
    if (haproxy === undefined || blackbox === undefined) return;
    const dir = await tempDir(t);
    const app = await startApp(t, dir);
    await fetch(`${app.url}/api`);
    const exported = exposedNames(await (await fetch(`${app.url}/metrics`)).text());

    // users_db_replica_max_lag_seconds exists only on MySQL with replicas: a second instance
    // is configured with a primary and a replica on closed ports (no MariaDB needed: it
    // serves /metrics with both unreachable).
    const [primaryPort, replicaPort] = [await freePort(), await freePort()];
    const withReplicas = await startApp(t, dir, {
      SERVER_NAME: 'webserver2',
      DATABASE_URL: `mysql://users:secret@127.0.0.1:${primaryPort}/users`,
      DATABASE_REPLICA_URLS: `mysql://users:secret@127.0.0.1:${replicaPort}/users`,
      MAX_REPLICA_LAG_SECONDS: '7',
      MIGRATE_ON_START: 'false',
      IMPORT_ON_START: 'never',
    });
    const replicaText = await (await fetch(`${withReplicas.url}/metrics`)).text();
    assert.match(replicaText, /^users_db_replica_max_lag_seconds 7$/m);
    for (const name of exposedNames(replicaText)) exported.add(name);

    // HAProxy 2.6's built-in exporter, with a backend that has an active and a backup server.
    const [statsPort, webPort] = [await freePort(), await freePort()];
    await writeFile(
      join(dir, 'haproxy.cfg'),
      [
        'defaults',
        '  mode http',
        '  timeout connect 1s',
        '  timeout client 5s',
        '  timeout server 5s',
        'frontend stats',
        `  bind 127.0.0.1:${statsPort}`,
        '  http-request use-service prometheus-exporter if { path /metrics }',
        'frontend public',
        `  bind 127.0.0.1:${webPort}`,
        '  default_backend web',
        'backend web',
        `  server webserver1 ${new URL(app.url).host} check`,
        `  server webserver2 ${new URL(app.url).host} check backup`,
        '',
      ].join('\n'),
    );
    const proxy = startService(t, haproxy, ['-db', '-f', join(dir, 'haproxy.cfg')]);
    const haproxyText = await pollFor(
      'the HAProxy exporter',
      async () => {
        const response = await fetch(`http://127.0.0.1:${statsPort}/metrics`);
        return response.ok ? response.text() : undefined;
      },
      20_000,
    ).catch((error: Error) => assert.fail(`${error.message}\n${proxy.output()}`));
    for (const name of exposedNames(haproxyText)) exported.add(name);

    const blackboxPort = await freePort();
    const exporter = startService(t, blackbox, [
      `--config.file=${join(DEPLOY, 'blackbox.yml')}`,
      `--web.listen-address=127.0.0.1:${blackboxPort}`,
    ]);
    const target = encodeURIComponent(`http://127.0.0.1:${webPort}/healthcheck`);
    const probe = await pollFor(
      'a blackbox probe',
      async () => {
        const response = await fetch(
          `http://127.0.0.1:${blackboxPort}/probe?module=http_healthcheck&target=${target}`,
        );
        return response.ok ? response.text() : undefined;
      },
      20_000,
    ).catch((error: Error) => assert.fail(`${error.message}\n${exporter.output()}`));
    // The probe goes through HAProxy to the app and matches the body, as in production.
    assert.match(probe, /^probe_success 1$/m);
    for (const name of exposedNames(probe)) exported.add(name);
    exported.add('up'); // Prometheus' own per-target series.

    for (const { alert, expr } of await readAlertRules()) {
      for (const name of metricNames(expr)) {
        assert.ok(exported.has(name), `${alert} uses ${name}, which nothing exports`);
      }
    }
    const dashboard = JSON.parse(
      await readFile(join(REPO_ROOT, 'deploy/grafana/users-api-dashboard.json'), 'utf8'),
    ) as { panels: { title: string; targets: { expr: string }[] }[] };
    for (const panel of dashboard.panels) {
      for (const name of panel.targets.flatMap((target) => metricNames(target.expr))) {
        assert.ok(exported.has(name), `panel "${panel.title}" uses ${name}, which nothing exports`);
      }
    }
  });

  it('end to end: Prometheus + blackbox_exporter see the instance die and fire the probe alert', async (t) => {
    const prometheus = await requireBinary(t, ['prometheus'], 'prometheus');
    const blackbox = await requireBinary(
      t,
      ['prometheus-blackbox-exporter', 'blackbox_exporter'],
      'prometheus-blackbox-exporter',
    );
    if (prometheus === undefined || blackbox === undefined) return;
    const dir = await tempDir(t);
    const app = await startApp(t, dir);
    const appHost = new URL(app.url).host;

    const blackboxPort = await freePort();
    const exporter = startService(t, blackbox, [
      `--config.file=${join(DEPLOY, 'blackbox.yml')}`,
      `--web.listen-address=127.0.0.1:${blackboxPort}`,
    ]);

    // The real rules with every `for:` shortened, so the test waits seconds, not minutes.
    const rules = await readFile(join(DEPLOY, 'alerts.yml'), 'utf8');
    await writeFile(join(dir, 'alerts.yml'), rules.replace(/^(\s+)for: \S+$/gm, '$1for: 1s'));
    await writeFile(
      join(dir, 'prometheus.yml'),
      [
        'global: { scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s }',
        'rule_files: [alerts.yml]',
        'scrape_configs:',
        '  - job_name: users-api',
        `    static_configs: [{ targets: ['${appHost}'] }]`,
        '  - job_name: blackbox-healthcheck',
        '    metrics_path: /probe',
        '    params: { module: [http_healthcheck] }',
        `    static_configs: [{ targets: ['${app.url}/healthcheck'] }]`,
        '    relabel_configs:',
        '      - { source_labels: [__address__], target_label: __param_target }',
        '      - { source_labels: [__param_target], target_label: instance }',
        `      - { target_label: __address__, replacement: '127.0.0.1:${blackboxPort}' }`,
        '',
      ].join('\n'),
    );
    const prometheusPort = await freePort();
    const server = startService(t, prometheus, [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${prometheusPort}`,
    ]);
    const api = `http://127.0.0.1:${prometheusPort}/api/v1`;
    const diagnostics = () => `${server.output()}\n${exporter.output()}`;

    const query = async (promql: string) => {
      const response = await fetch(`${api}/query?query=${encodeURIComponent(promql)}`);
      const body = (await response.json()) as { data: { result: { value: [number, string] }[] } };
      return body.data.result.map((sample) => sample.value[1]);
    };
    await pollFor('the probe and the scrape to succeed', async () => {
      const [probe, up] = [await query('probe_success'), await query('up{job="users-api"}')];
      return probe[0] === '1' && up[0] === '1' ? true : undefined;
    }).catch((error: Error) => assert.fail(`${error.message}\n${diagnostics()}`));
    const alertsBefore = (await (await fetch(`${api}/alerts`)).json()) as {
      data: { alerts: unknown[] };
    };
    assert.deepEqual(alertsBefore.data.alerts, []);

    app.child.kill('SIGKILL');
    const firing = await pollFor('PublicHealthProbeFailing to fire', async () => {
      const response = await fetch(`${api}/alerts`);
      const body = (await response.json()) as {
        data: { alerts: { labels: Record<string, string>; state: string }[] };
      };
      const alerts = body.data.alerts.filter((alert) => alert.state === 'firing');
      return alerts.some((alert) => alert.labels.alertname === 'PublicHealthProbeFailing')
        ? alerts
        : undefined;
    }).catch((error: Error) => assert.fail(`${error.message}\n${diagnostics()}`));
    const probeAlert = firing.find(
      (alert) => alert.labels.alertname === 'PublicHealthProbeFailing',
    )!;
    assert.deepEqual(probeAlert.labels, {
      alertname: 'PublicHealthProbeFailing',
      instance: `${app.url}/healthcheck`,
      job: 'blackbox-healthcheck',
      severity: 'page',
    });
  });
});
