/**
 * Benchmarks, printed as one JSON object (and saved to bench/results/latest.json). Never asserts:
 * every HTTP figure comes with a baseline measured in the same run on the same machine (a bare
 * node:http server answering the identical bytes from memory), and the ratio between them is
 * what to compare across runs. Each server runs in a process of its own (bench/serve.ts), so a
 * load generator never shares a server's event loop. Service and baseline are loaded side by
 * side in alternating rounds (sideBySide). Loads run with wrk (C, two threads) when installed,
 * else autocannon (one JS thread); a hello-world under both shows whether autocannon would have
 * been the ceiling.
 *
 *   npm run bench                                       # everything (about 12 minutes)
 *   npm run bench -- --duration 3 --sizes 1000 --rows 100000 --stream-rows 100000   # quick
 *   npm run bench -- --writes-only --rounds 4 --duration 20   # /api under single-user writes
 *   npm run bench -- --edge-only                           # the cost of HAProxy in front
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { loadConfig } from '../src/config/config.js';
import type { RawEnv } from '../src/config/env.js';
import { beginWriteTransaction } from '../src/db/begin-write-transaction.js';
import { migrateToLatest } from '../src/db/migrate-to-latest.js';
import { openDatabase } from '../src/db/open-database.js';
import { decodeUtf8 } from '../src/importer/decode-utf8.js';
import { fileImportSource } from '../src/importer/import-source.js';
import { importUsers } from '../src/importer/import-users.js';
import { validateRecords } from '../src/importer/validate-records.js';
import { generateUsers } from '../scripts/generate-users-lib.js';
import { SERVE_NODE_FLAGS } from '../scripts/serve-node-flags.js';
import {
  freePort,
  missingMariadbBinaries,
  startMariadbPair,
  type MariadbPair,
} from '../scripts/mariadb-pair.js';
import { findBinary, haproxyProcess } from '../scripts/local-cluster.js';

const { values: options } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    sizes: { type: 'string', default: '1000,10000,100000' },
    'stream-rows': { type: 'string', default: '1000000' },
    duration: { type: 'string', default: '20' },
    warmup: { type: 'string', default: '2' },
    connections: { type: 'string', default: '32' },
    rounds: { type: 'string', default: '10' },
    'cold-samples': { type: 'string', default: '30' },
    'skip-mariadb': { type: 'boolean', default: false },
    // Bare /api from page files against nginx (1M users; 10000000 is the 10M run, not CI).
    'pages-rows': { type: 'string', default: '1000000' },
    'pages-only': { type: 'boolean', default: false },
    // An existing SQLite file of users for that part instead of generating and importing one
    // (the 10M import takes ~8 minutes); the run changes it (one PATCH, a version bump).
    'pages-db': { type: 'string' },
    // Bare /api while single-user writes run (and their latency, SQLite and the MariaDB pair).
    'writes-rows': { type: 'string', default: '100000,1000000' },
    'writes-only': { type: 'boolean', default: false },
    // The same requests straight to webserver1 and through HAProxy with the real config.
    'edge-rows': { type: 'string', default: '10000' },
    'edge-only': { type: 'boolean', default: false },
  },
});
const IMPORT_ROWS = Number(options.rows);
const SIZES = options.sizes.split(',').map(Number);
const STREAM_ROWS = Number(options['stream-rows']);
const PAGES_ROWS = Number(options['pages-rows']);
const WRITES_ROWS = options['writes-rows'].split(',').map(Number);
const EDGE_ROWS = Number(options['edge-rows']);
const DURATION_SECONDS = Number(options.duration);
const WARMUP_SECONDS = Number(options.warmup);
const CONNECTIONS = Number(options.connections);
const ROUNDS = Number(options.rounds);
const COLD_SAMPLES = Number(options['cold-samples']);
const HAVE_WRK = spawnSync('sh', ['-c', 'command -v wrk']).status === 0;
const HAVE_CURL = spawnSync('sh', ['-c', 'command -v curl']).status === 0;

const round = (value: number, digits = 0) => Number(value.toFixed(digits));
const ratio = (a: number, b: number) => (b > 0 ? round(a / b, 3) : null);
const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return round(
    sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN,
    2,
  );
};

async function timed<T>(run: () => Promise<T>): Promise<{ seconds: number; result: T }> {
  const start = process.hrtime.bigint();
  const result = await run();
  return { seconds: Number(process.hrtime.bigint() - start) / 1e9, result };
}

async function writeSample(path: string, rows: number): Promise<void> {
  const out = createWriteStream(path);
  for (const chunk of generateUsers(rows)) if (!out.write(chunk)) await once(out, 'drain');
  out.end();
  await once(out, 'finish');
}

/** Parse + validate only: the ceiling any database import can reach with this importer. */
async function parseOnly(path: string): Promise<number> {
  const { rows } = await validateRecords(
    decodeUtf8(fileImportSource(path, 'csv').open()),
    'csv',
    5000,
    () => Promise.resolve(),
  );
  return rows;
}

async function importInto(env: RawEnv, path: string, dir: string) {
  const config = loadConfig({ LOG_LEVEL: 'silent', ...env }, dir);
  const db = openDatabase(config.database, { create: true });
  try {
    await migrateToLatest(db);
    const { seconds, result } = await timed(() =>
      importUsers(db, fileImportSource(path, 'csv'), 'replace'),
    );
    return {
      rows: result.rows,
      seconds: round(seconds, 2),
      rowsPerSecond: round(result.rows / seconds),
    };
  } finally {
    await db.close();
  }
}

interface Server {
  url: string;
  /** Current and peak resident memory (Linux /proc), in bytes. */
  rss(): Promise<{ rssBytes: number; peakRssBytes: number }>;
  stop(): Promise<void>;
}

function childServer(child: ChildProcess, url: Promise<string>): Promise<Server> {
  return url.then((address) => ({
    url: address,
    async rss() {
      const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
      const kb = (field: string) =>
        Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1]);
      return { rssBytes: kb('VmRSS') * 1024, peakRssBytes: kb('VmHWM') * 1024 };
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      await once(child, 'exit');
    },
  }));
}

/** A baseline server (bench/serve.ts) in a child process; resolves with its URL. */
function serveBaseline(...args: string[]): Promise<Server> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', new URL('./serve.ts', import.meta.url).pathname, ...args],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const url = new Promise<string>((resolve, reject) => {
    let text = '';
    child.stdout.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      const match = /listening (\S+)/.exec(text);
      if (match?.[1] !== undefined) resolve(match[1]);
    });
    child.once('exit', (code) => reject(new Error(`bench server exited with ${code}`)));
  });
  return childServer(child, url);
}

/**
 * The service as production runs it: `npm start`'s command (built at the start of the run)
 * with this environment, on a free loopback port. Warnings and errors only in the log.
 */
async function serveApp(env: RawEnv): Promise<Server> {
  const port = await freePort();
  const child = spawn(
    process.execPath,
    [...SERVE_NODE_FLAGS, new URL('../dist/main.js', import.meta.url).pathname, 'serve'],
    {
      env: {
        PATH: process.env.PATH,
        ...env,
        PORT: String(port),
        HOST: '127.0.0.1',
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'inherit', 'inherit'],
    },
  );
  const url = `http://127.0.0.1:${port}`;
  const ready = (async () => {
    for (let attempt = 0; attempt < 600; attempt += 1) {
      if (child.exitCode !== null) throw new Error(`the service exited with ${child.exitCode}`);
      try {
        if ((await fetch(`${url}/livez`)).ok) return url;
      } catch {
        // Not listening yet: try again shortly (bounded: 600 × 100 ms).
      }
      await sleep(100);
    }
    throw new Error('the service did not start within 60 s');
  })();
  return childServer(child, ready);
}

interface LoadFigures {
  requestsPerSecond: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  non2xx: number;
  errors: number;
}

async function autocannonLoad(url: string, seconds: number): Promise<LoadFigures> {
  const result = await autocannon({ url, connections: CONNECTIONS, duration: seconds });
  return {
    requestsPerSecond: round(result.requests.average),
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  };
}

/** wrk's arguments for one load (`--latency` gives the 50%/99% lines). */
function wrkArguments(
  url: string,
  seconds: number,
  extra: { connections?: number; headers?: string[] } = {},
): string[] {
  return [
    `-t2`,
    `-c${extra.connections ?? CONNECTIONS}`,
    `-d${seconds}s`,
    '--latency',
    '--timeout',
    '30s',
    ...(extra.headers ?? []).flatMap((header) => ['-H', header]),
    url,
  ];
}

function wrkLoad(
  url: string,
  seconds: number,
  extra: { connections?: number; headers?: string[] } = {},
): LoadFigures {
  const run = spawnSync('wrk', wrkArguments(url, seconds, extra), {
    encoding: 'utf8',
    timeout: (seconds + 30) * 1000,
  });
  return wrkFigures(run.stdout);
}

/** `wrkLoad` without blocking this process's event loop (something else runs meanwhile). */
async function wrkLoadAsync(
  url: string,
  seconds: number,
  extra: { connections?: number; headers?: string[] } = {},
): Promise<LoadFigures> {
  const child = spawn('wrk', wrkArguments(url, seconds, extra), {
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: (seconds + 30) * 1000,
  });
  let text = '';
  child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
  await once(child, 'exit');
  return wrkFigures(text);
}

/** wrk's `--latency` report: `Requests/sec:` and the 50%/99% lines. */
function wrkFigures(text: string): LoadFigures {
  const ms = (label: string) => {
    const match = new RegExp(`^\\s*${label}%\\s+([\\d.]+)(us|ms|s)\\s*$`, 'm').exec(text);
    if (!match) return NaN;
    const value = Number(match[1]);
    return round(match[2] === 'us' ? value / 1000 : match[2] === 's' ? value * 1000 : value, 2);
  };
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(text)?.[1];
  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(text);
  return {
    requestsPerSecond: round(Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1] ?? NaN)),
    latencyP50Ms: ms('50'),
    latencyP99Ms: ms('99'),
    non2xx: Number(non2xx ?? 0),
    errors: errors ? errors.slice(1).reduce((sum, value) => sum + Number(value), 0) : 0,
  };
}

type Generator = 'wrk' | 'autocannon';
const GENERATOR: Generator = HAVE_WRK ? 'wrk' : 'autocannon';

function runLoad(generator: Generator, url: string, seconds: number): Promise<LoadFigures> {
  return generator === 'wrk'
    ? Promise.resolve(wrkLoad(url, seconds))
    : autocannonLoad(url, seconds);
}

/** A warm-up, then one load of DURATION_SECONDS (with wrk when installed). */
async function load(url: string): Promise<LoadFigures> {
  await runLoad(GENERATOR, url, WARMUP_SECONDS);
  return runLoad(GENERATOR, url, DURATION_SECONDS);
}

/**
 * The service against its baseline, loaded side by side: after a warm-up of each, ROUNDS short
 * loads of each in turn (service first in even rounds, baseline first in odd ones), the same
 * DURATION_SECONDS each in all. This machine's speed drifts by a third within minutes (a
 * hello-world alone: 19k-36k req/s in consecutive 3 s loads); two loads taken back to back
 * see the same drift, and the ratio of their totals compares like with like.
 */
async function sideBySide(serviceUrl: string, baselineUrl: string) {
  await runLoad(GENERATOR, serviceUrl, WARMUP_SECONDS);
  await runLoad(GENERATOR, baselineUrl, WARMUP_SECONDS);
  const seconds = DURATION_SECONDS / ROUNDS;
  const service: LoadFigures[] = [];
  const baseline: LoadFigures[] = [];
  for (let round = 0; round < ROUNDS; round += 1) {
    const order = round % 2 === 0 ? [serviceUrl, baselineUrl] : [baselineUrl, serviceUrl];
    for (const url of order) {
      (url === serviceUrl ? service : baseline).push(await runLoad(GENERATOR, url, seconds));
    }
  }
  const total = (loads: LoadFigures[]) => loads.reduce((sum, l) => sum + l.requestsPerSecond, 0);
  return {
    generator: GENERATOR,
    rounds: ROUNDS,
    service: combined(service),
    baseline: combined(baseline),
    ratio: ratio(total(service), total(baseline)),
    roundRatios: service.map((l, index) =>
      ratio(l.requestsPerSecond, baseline[index]!.requestsPerSecond),
    ),
  };
}

/** `sideBySide` against a baseline server started for it (bench/serve.ts's arguments). */
async function againstBaseline(serviceUrl: string, ...baselineArgs: string[]) {
  const baseline = await serveBaseline(...baselineArgs);
  try {
    return await sideBySide(serviceUrl, baseline.url);
  } finally {
    await baseline.stop();
  }
}

/** Rounds of one server as one figure: mean req/s, median p50, worst p99, summed failures. */
function combined(loads: LoadFigures[]): LoadFigures {
  const sum = (pick: (l: LoadFigures) => number) => loads.reduce((total, l) => total + pick(l), 0);
  return {
    requestsPerSecond: round(sum((l) => l.requestsPerSecond) / loads.length),
    latencyP50Ms: percentile(
      loads.map((l) => l.latencyP50Ms),
      50,
    ),
    latencyP99Ms: Math.max(...loads.map((l) => l.latencyP99Ms)),
    non2xx: sum((l) => l.non2xx),
    errors: sum((l) => l.errors),
  };
}

/** Is the load generator the ceiling? The same hello-world under each generator. */
async function generatorCheck() {
  const server = await serveBaseline('hello');
  try {
    await autocannonLoad(server.url, WARMUP_SECONDS);
    return {
      autocannon: await autocannonLoad(server.url, DURATION_SECONDS),
      ...(HAVE_WRK && { wrk: wrkLoad(server.url, DURATION_SECONDS) }),
    };
  } finally {
    await server.stop();
  }
}

const sqliteEnv = (path: string, extra: RawEnv = {}): RawEnv => ({
  DATABASE_URL: `sqlite:${path}`,
  IMPORT_ON_START: 'never',
  LOG_LEVEL: 'silent',
  ...extra,
});

/** A SQLite file of `rows` generated users, and the seconds its import took (generation apart). */
async function sqliteWithUsers(
  dir: string,
  rows: number,
): Promise<{ path: string; importSeconds: number }> {
  const csv = join(dir, `users-${rows}.csv`);
  await writeSample(csv, rows);
  const path = join(dir, `users-${rows}.db`);
  const { seconds } = await timed(() => importInto(sqliteEnv(path), csv, dir));
  await rm(csv);
  return { path, importSeconds: round(seconds, 1) };
}

/**
 * The ETag of the bare `/api` body `url` serves from memory or page files; null while it streams
 * from the database (a build under way). The body is dropped at once: streamed, it is the whole
 * table, and a body left open would hold a stream slot (MAX_CONCURRENT_STREAMS).
 */
async function servedEtag(url: string): Promise<string | null> {
  const response = await fetch(`${url}/api`, { headers: { range: 'bytes=0-0' } });
  await response.body?.cancel();
  return response.headers.get('etag');
}

/** Bumps the data version the way every write does (a committed write transaction). */
async function bumpDataVersion(path: string, dir: string): Promise<void> {
  const db = openDatabase(loadConfig(sqliteEnv(path), dir).database, { create: false });
  try {
    const trx = await beginWriteTransaction(db);
    await trx.commit().execute();
  } finally {
    await db.close();
  }
}

async function fetchBody(url: string) {
  const started = performance.now();
  const response = await fetch(url);
  let firstByteMs: number | undefined;
  let bytes = 0;
  for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
    firstByteMs ??= performance.now() - started;
    bytes += chunk.length;
  }
  return {
    status: response.status,
    bytes,
    firstByteMs: firstByteMs ?? 0,
    ms: performance.now() - started,
  };
}

function curlBody(url: string, headers: readonly string[] = []) {
  const run = spawnSync(
    'curl',
    [
      '-s',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code} %{size_download} %{time_starttransfer} %{time_total}',
      ...headers.flatMap((header) => ['-H', header]),
      url,
    ],
    { encoding: 'utf8', timeout: 600_000 },
  );
  const [status, bytes, firstByte, total] = run.stdout.split(' ').map(Number);
  return {
    status: status ?? 0,
    bytes: bytes ?? 0,
    firstByteMs: (firstByte ?? 0) * 1000,
    ms: (total ?? 0) * 1000,
  };
}

/**
 * One whole body, timed by curl when installed: curl (C) reads as fast as the socket delivers,
 * where fetch (undici) in this process takes 10-20 ms over a 1 MB body that curl reads in
 * 1.5 ms, and seconds over 100 MB: time that would be counted as the service's.
 */
const BODY_CLIENT = HAVE_CURL ? 'curl' : 'fetch';
const wholeBody = (url: string) => (HAVE_CURL ? Promise.resolve(curlBody(url)) : fetchBody(url));

/** /api cached, cold, filtered and /healthcheck for one table size, against the baselines. */
async function apiForSize(dir: string, rows: number) {
  const { path } = await sqliteWithUsers(dir, rows);
  const app = await serveApp(sqliteEnv(path));
  try {
    const bodyFile = join(dir, `body-${rows}.json`);
    const body = Buffer.from(await (await fetch(`${app.url}/api`)).arrayBuffer());
    await writeFile(bodyFile, body);
    const bareCached = await againstBaseline(`${app.url}/api`, 'static', bodyFile);
    // Cold: a write has just bumped the data version; the next request after the cache's check
    // interval (250 ms) rebuilds the body. One request at a time, each after its own write.
    const cold: number[] = [];
    for (let sample = 0; sample < COLD_SAMPLES; sample += 1) {
      await bumpDataVersion(path, dir);
      await sleep(300);
      cold.push((await wholeBody(`${app.url}/api`)).ms);
    }
    const filtered = await load(`${app.url}/api?state=NY&limit=100`);
    const healthcheck = await againstBaseline(`${app.url}/healthcheck`, 'hello');
    return {
      users: rows,
      bodyBytes: body.length,
      bareCachedAgainstSameBytes: bareCached,
      coldAfterDataChange: {
        client: BODY_CLIENT,
        samples: cold.length,
        latencyP50Ms: percentile(cold, 50),
        latencyP99Ms: percentile(cold, 99),
      },
      stateNyLimit100: filtered,
      healthcheckAgainstHelloWorld: healthcheck,
    };
  } finally {
    await app.stop();
  }
}

/** The whole bare /api body for a table over the cache cap: streamed from the database. */
async function streamLargeTable(dir: string, rows: number) {
  const { path } = await sqliteWithUsers(dir, rows);
  // The streaming path itself (what a body over the memory cap gets without page files).
  const app = await serveApp(sqliteEnv(path, { API_BODY_DIR: 'off' }));
  try {
    const idle = await app.rss();
    const runs = [];
    for (let run = 0; run < 3; run += 1) {
      runs.push(await wholeBody(`${app.url}/api`));
    }
    const memory = await app.rss();
    return {
      users: rows,
      client: BODY_CLIENT,
      bodyBytes: runs[0]?.bytes,
      runs: runs.map((run) => ({
        status: run.status,
        seconds: round(run.ms / 1000, 2),
        firstByteMs: round(run.firstByteMs, 1),
      })),
      serverIdleRssMB: round(idle.rssBytes / 2 ** 20),
      serverPeakRssMB: round(memory.peakRssBytes / 2 ** 20),
      serverRssAfterMB: round(memory.rssBytes / 2 ** 20),
    };
  } finally {
    await app.stop();
  }
}

/** nginx (Debian's nginx-light) serving `file` at /api with sendfile, gzip_static from `file.gz`. */
async function serveNginx(dir: string, file: string): Promise<Server & { pid: number }> {
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  await writeFile(
    conf,
    // As root, nginx's workers would run as nobody and not read the 0700 temp folders.
    `${process.getuid?.() === 0 ? 'user root; ' : ''}daemon off; worker_processes 2; pid ${join(dir, 'nginx.pid')}; error_log stderr warn;
events { worker_connections 1024; }
http { access_log off; sendfile on; tcp_nopush on; gzip_static on; default_type application/json;
  client_body_temp_path ${dir}; proxy_temp_path ${dir}; fastcgi_temp_path ${dir};
  uwsgi_temp_path ${dir}; scgi_temp_path ${dir};
  server { listen 127.0.0.1:${port}; location = /api { alias ${file}; } } }
`,
  );
  const child = spawn('/usr/sbin/nginx', ['-c', conf, '-p', dir], { stdio: 'inherit' });
  const url = `http://127.0.0.1:${port}`;
  for (let attempt = 0; attempt < 100; attempt += 1) {
    if ((await fetch(`${url}/api`, { method: 'HEAD' }).catch(() => undefined))?.ok) break;
    await sleep(100);
  }
  return { ...(await childServer(child, Promise.resolve(url))), pid: child.pid ?? 0 };
}

/**
 * Bare /api at `rows` users from page files against nginx serving the same bytes (identity and
 * gzip, side by side in alternating rounds), the service's peak RSS, and the time from a
 * committed change (from outside: every page re-rendered) to the new version served.
 */
async function pagesAgainstNginx(dir: string, rows: number) {
  if (findBinary('nginx') === undefined) {
    return { skipped: 'missing nginx: apt-get install -y nginx-light' };
  }
  if (!HAVE_CURL) return { skipped: 'missing curl' };
  const given = options['pages-db'];
  const { path, importSeconds } =
    given === undefined
      ? await sqliteWithUsers(dir, rows)
      : { path: given, importSeconds: 'not measured: --pages-db' };
  const app = await serveApp(
    sqliteEnv(path, { API_CACHE_CHECK_MS: '250', ADMIN_TOKEN: BENCH_ADMIN_TOKEN }),
  );
  const nginxDir = await mkdtemp(join(dir, 'nginx-'));
  try {
    const etagOf = () => servedEtag(app.url);
    const started = performance.now();
    // curl, not fetch: undici's arrayBuffer() over a 1 GB body (the 10M run) read so slowly
    // that it stalled for minutes.
    const download = (file: string, headers: string[] = []) => {
      const run = spawnSync('curl', [
        '-sf',
        ...headers.flatMap((header) => ['-H', header]),
        '-o',
        file,
        `${app.url}/api`,
      ]);
      if (run.status !== 0) throw new Error(`curl ${app.url}/api failed: ${run.status}`);
    };
    // The first request streams from the database while the page files are built.
    download('/dev/null');
    while ((await etagOf()) === null) await sleep(50);
    const firstBuildSeconds = round((performance.now() - started) / 1000, 2);
    const bodyFile = join(nginxDir, 'api.json');
    download(bodyFile);
    download(`${bodyFile}.gz`, ['Accept-Encoding: gzip']);
    const nginx = await serveNginx(nginxDir, bodyFile);
    try {
      const rounds = (headers: string[]) => {
        const service: number[] = [];
        const baseline: number[] = [];
        const seconds = Math.max(2, DURATION_SECONDS / ROUNDS);
        for (let index = 0; index < ROUNDS; index += 1) {
          const order = index % 2 === 0 ? ['s', 'b'] : ['b', 's'];
          for (const which of order) {
            const url = which === 's' ? `${app.url}/api` : `${nginx.url}/api`;
            const figures = wrkLoad(url, seconds, { connections: 4, headers });
            (which === 's' ? service : baseline).push(figures.requestsPerSecond);
          }
        }
        const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
        return {
          serviceRequestsPerSecond: round(sum(service) / service.length, 2),
          nginxRequestsPerSecond: round(sum(baseline) / baseline.length, 2),
          ratio: ratio(sum(service), sum(baseline)),
          roundRatios: service.map((value, index) => ratio(value, baseline[index]!)),
        };
      };
      const identity = HAVE_WRK ? rounds([]) : { skipped: 'no wrk' };
      const gzip = HAVE_WRK ? rounds(['Accept-Encoding: gzip']) : { skipped: 'no wrk' };
      const brAnswer = spawnSync(
        'curl',
        ['-s', '-o', '/dev/null', '-D', '-', '-H', 'Accept-Encoding: br, gzip', `${app.url}/api`],
        { encoding: 'utf8' },
      ).stdout;
      const brEncoding = /^content-encoding: *(\S+)/im.exec(brAnswer)?.[1] ?? 'identity';
      console.error(JSON.stringify({ identity, gzip, brEncoding }));
      // One client alone, the whole body: what a person downloading it waits for.
      const oneDownload = (url: string, headers: string[] = []) => {
        const { firstByteMs, ms } = curlBody(url, headers);
        return { firstByteMs: round(firstByteMs, 1), totalMs: round(ms) };
      };
      const downloads = HAVE_CURL
        ? {
            identity: oneDownload(`${app.url}/api`),
            nginxIdentity: oneDownload(`${nginx.url}/api`),
            gzip: oneDownload(`${app.url}/api`, ['Accept-Encoding: gzip']),
            nginxGzip: oneDownload(`${nginx.url}/api`, ['Accept-Encoding: gzip']),
          }
        : { skipped: 'no curl' };
      const memory = await app.rss();
      /** Seconds from `since` until page files of a version other than `from` are served. */
      const servedAfter = async (from: string | null, since: number) => {
        let current = from;
        for (let polls = 0; current === from || current === null; polls += 1) {
          if (polls > 30_000) throw new Error('no new version served within 10 minutes');
          await sleep(20);
          current = await etagOf();
        }
        return round((performance.now() - since) / 1000, 2);
      };
      // One user changed through this instance: the page that holds it is rendered again.
      const beforeOneRow = await etagOf();
      const patchSent = performance.now();
      const patch = await fetch(`${app.url}/api/users/${Math.ceil(rows / 2)}`, {
        method: 'PATCH',
        headers: {
          authorization: `Bearer ${BENCH_ADMIN_TOKEN}`,
          'content-type': 'application/merge-patch+json',
          'if-match': '*',
        },
        body: JSON.stringify({ CITY: 'Bench one row' }),
      });
      if (patch.status !== 200) throw new Error(`PATCH answered ${patch.status}`);
      const oneRowChangeToServedSeconds = await servedAfter(beforeOneRow, patchSent);
      // A committed change from outside this instance: every page is rendered again.
      const beforeFull = await etagOf();
      await bumpDataVersion(path, dir);
      const fullChangeToServedSeconds = await servedAfter(beforeFull, performance.now());
      return {
        users: rows,
        importSeconds,
        databaseBytes: (await stat(path)).size,
        bodyBytes: (await readFile(bodyFile)).length,
        gzipBytes: (await readFile(`${bodyFile}.gz`)).length,
        firstBuildSeconds,
        oneDownload: downloads,
        identityAgainstNginx: identity,
        gzipAgainstNginxGzipStatic: gzip,
        brAsked: `Accept-Encoding: br, gzip answered ${brEncoding} (page files keep no br copy)`,
        serverPeakRssMB: round(memory.peakRssBytes / 2 ** 20),
        oneRowChangeToServedSeconds,
        fullChangeToServedSeconds,
        pageFilesBytes: Number(
          spawnSync('du', ['-sb', `${path}.api-body`], { encoding: 'utf8' }).stdout.split('\t')[0],
        ),
      };
    } finally {
      await nginx.stop();
    }
  } finally {
    await app.stop();
  }
}

/**
 * What HAProxy in front costs: `/healthcheck` and bare `/api` straight to webserver1 against the
 * same through HAProxy with deploy/haproxy/haproxy.cfg (webserver1 active, webserver2 backup,
 * both serving the same SQLite file), in alternating rounds; the ratio is edge / direct.
 */
async function edgeCost(dir: string, rows: number) {
  if (findBinary('haproxy') === undefined) return { skipped: 'missing haproxy' };
  const { path } = await sqliteWithUsers(dir, rows);
  const apps = [await serveApp(sqliteEnv(path)), await serveApp(sqliteEnv(path))];
  const haproxy = haproxyProcess({
    logFile: join(dir, 'haproxy.log'),
    lbPort: await freePort(),
    statsPort: await freePort(),
    statsPassword: randomBytes(16).toString('hex'),
    appAddrs: apps.map((app) => new URL(app.url).host) as [string, string],
  });
  try {
    await haproxy.start();
    const paths: Record<string, unknown> = {};
    for (const path of ['/healthcheck', '/api']) {
      const sides = await sideBySide(`${haproxy.url}${path}`, `${apps[0]!.url}${path}`);
      paths[path] = {
        throughHaproxy: sides.service,
        direct: sides.baseline,
        ratio: sides.ratio,
        roundRatios: sides.roundRatios,
      };
    }
    return { users: rows, connections: CONNECTIONS, generator: GENERATOR, paths };
  } finally {
    await haproxy.stop();
    for (const app of apps) await app.stop();
  }
}

async function apiFromReplica(pair: MariadbPair, dir: string) {
  const csv = join(dir, 'users-1k.csv');
  await writeSample(csv, 1000);
  const env: RawEnv = {
    DATABASE_URL: pair.primary.url,
    DATABASE_REPLICA_URLS: pair.replica.url,
    IMPORT_ON_START: 'never',
    LOG_LEVEL: 'silent',
  };
  await importInto(env, csv, dir);
  const app = await serveApp(env);
  try {
    const health = (await (await fetch(`${app.url}/healthcheck?format=json`)).json()) as {
      checks: Record<string, { status: string }[]>;
    };
    const cached = await load(`${app.url}/api`);
    const filtered = await load(`${app.url}/api?state=NY&limit=100`);
    return {
      users: 1000,
      replicaInRotation: health.checks['database:replicationLag']?.[0]?.status === 'pass',
      bareCached: cached,
      stateNyLimit100: filtered,
    };
  } finally {
    await app.stop();
  }
}

const BENCH_ADMIN_TOKEN = 'bench-admin-token';

/**
 * Single-user writes (merge patches of CITY, `If-Match: *`) at `perSecond`, open loop, for
 * `seconds` (bounded: at most perSecond × seconds writes); the latency of each (ms), and how
 * many failed.
 */
async function steadyWrites(url: string, users: number, perSecond: number, seconds: number) {
  const latencies: number[] = [];
  let failed = 0;
  const writes: Promise<void>[] = [];
  const started = performance.now();
  for (let index = 0; index < perSecond * seconds; index += 1) {
    const wait = started + (index * 1000) / perSecond - performance.now();
    if (wait > 0) await sleep(wait);
    const id = 1 + ((index * 7919) % users);
    const sent = performance.now();
    writes.push(
      fetch(`${url}/api/users/${id}`, {
        method: 'PATCH',
        headers: {
          authorization: `Bearer ${BENCH_ADMIN_TOKEN}`,
          'content-type': 'application/merge-patch+json',
          'if-match': '*',
        },
        body: JSON.stringify({ CITY: `Bench ${index}` }),
      }).then(
        async (response) => {
          await response.arrayBuffer();
          if (response.status === 200) latencies.push(performance.now() - sent);
          else failed += 1;
        },
        () => void (failed += 1),
      ),
    );
  }
  await Promise.all(writes);
  return { latencies, failed };
}

/**
 * Bare /api at `rows` users with no writes against the same load while single-user writes run
 * at 10 and 100 per second, side by side in alternating rounds on one server (wrk, 4
 * connections: bodies of 10-100 MB), and the writes' latency, under that load and alone (a
 * round of the same writes with no /api load). Needs wrk.
 */
async function apiUnderWrites(dir: string, rows: number) {
  if (!HAVE_WRK) return { skipped: 'needs wrk' };
  const { path } = await sqliteWithUsers(dir, rows);
  const app = await serveApp(sqliteEnv(path, { ADMIN_TOKEN: BENCH_ADMIN_TOKEN }));
  try {
    // Measured once the body is served built (at 1M, from page files), not while it streams.
    await wholeBody(`${app.url}/api`);
    for (let polls = 0; (await servedEtag(app.url)) === null; polls += 1) {
      if (polls > 3000) throw new Error('the body was not built within 5 minutes');
      await sleep(100);
    }
    const seconds = DURATION_SECONDS / ROUNDS;
    const bare = () => wrkLoadAsync(`${app.url}/api`, seconds, { connections: 4 });
    const rates = [];
    for (const perSecond of [10, 100]) {
      await bare(); // warm-up
      // The write path alone: the same writes with no /api load beside them.
      const alone = await steadyWrites(app.url, rows, perSecond, seconds);
      const quiet: LoadFigures[] = [];
      const writing: LoadFigures[] = [];
      const latencies: number[] = [];
      let failed = 0;
      for (let round = 0; round < ROUNDS; round += 1) {
        const withWrites = async () => {
          const [figures, written] = await Promise.all([
            bare(),
            steadyWrites(app.url, rows, perSecond, seconds),
          ]);
          writing.push(figures);
          latencies.push(...written.latencies);
          failed += written.failed;
        };
        const withoutWrites = async () => void quiet.push(await bare());
        for (const run of round % 2 === 0
          ? [withWrites, withoutWrites]
          : [withoutWrites, withWrites]) {
          await run();
        }
      }
      const total = (loads: LoadFigures[]) =>
        loads.reduce((sum, l) => sum + l.requestsPerSecond, 0);
      rates.push({
        writesPerSecond: perSecond,
        withoutWrites: combined(quiet),
        withWrites: combined(writing),
        ratio: ratio(total(writing), total(quiet)),
        writes: {
          done: latencies.length,
          failed,
          latencyP50Ms: percentile(latencies, 50),
          latencyP99Ms: percentile(latencies, 99),
        },
        writesAlone: {
          done: alone.latencies.length,
          failed: alone.failed,
          latencyP50Ms: percentile(alone.latencies, 50),
          latencyP99Ms: percentile(alone.latencies, 99),
        },
      });
    }
    return { users: rows, roundSeconds: seconds, rounds: ROUNDS, rates };
  } finally {
    await app.stop();
  }
}

/** Single-user write latency on the MariaDB pair (10 writes/s), read-your-writes wait included. */
async function writeLatencyOnPair(pair: MariadbPair, dir: string) {
  const csv = join(dir, 'users-writes.csv');
  await writeSample(csv, 1000);
  const env: RawEnv = {
    DATABASE_URL: pair.primary.url,
    DATABASE_REPLICA_URLS: pair.replica.url,
    IMPORT_ON_START: 'never',
    LOG_LEVEL: 'silent',
    ADMIN_TOKEN: BENCH_ADMIN_TOKEN,
  };
  await importInto(env, csv, dir);
  const app = await serveApp(env);
  try {
    await steadyWrites(app.url, 1000, 10, WARMUP_SECONDS);
    const { latencies, failed } = await steadyWrites(app.url, 1000, 10, DURATION_SECONDS);
    return {
      users: 1000,
      writesPerSecond: 10,
      done: latencies.length,
      failed,
      latencyP50Ms: percentile(latencies, 50),
      latencyP99Ms: percentile(latencies, 99),
    };
  } finally {
    await app.stop();
  }
}

// The service runs from dist/, as in production: build it from the current source first.
const build = spawnSync('npm', ['run', 'build', '--silent'], { stdio: 'inherit' });
if (build.status !== 0) throw new Error('npm run build failed');

const dir = await mkdtemp(join(tmpdir(), 'users-api-bench-'));
let pair: MariadbPair | undefined;
try {
  if (options['writes-only']) {
    const loadAtStart = loadavg().map((value) => round(value, 2));
    const underWrites = [];
    for (const rows of WRITES_ROWS) underWrites.push(await apiUnderWrites(dir, rows));
    let pairLatency: unknown = { skipped: `missing ${missingMariadbBinaries().join(', ')}` };
    if (options['skip-mariadb']) pairLatency = { skipped: '--skip-mariadb' };
    else if (missingMariadbBinaries().length === 0) {
      pair = await startMariadbPair();
      pairLatency = await writeLatencyOnPair(pair, dir);
    }
    const text = JSON.stringify(
      {
        date: new Date().toISOString(),
        node: process.version,
        loadAverageAtStart: loadAtStart,
        loadAverageAtEnd: loadavg().map((value) => round(value, 2)),
        durationSeconds: DURATION_SECONDS,
        apiUnderSingleUserWrites: underWrites,
        singleUserWritesOnMariadbPair: pairLatency,
      },
      null,
      2,
    );
    console.log(text);
    await writeFile(new URL('./results/writes.json', import.meta.url), text + '\n');
  } else if (options['edge-only']) {
    const text = JSON.stringify(
      {
        date: new Date().toISOString(),
        node: process.version,
        loadAverageAtStart: loadavg().map((value) => round(value, 2)),
        edge: await edgeCost(dir, EDGE_ROWS),
        loadAverageAtEnd: loadavg().map((value) => round(value, 2)),
      },
      null,
      2,
    );
    console.log(text);
    await writeFile(new URL('./results/edge.json', import.meta.url), text + '\n');
  } else if (options['pages-only']) {
    const pages = await pagesAgainstNginx(dir, PAGES_ROWS);
    const text = JSON.stringify(
      {
        date: new Date().toISOString(),
        node: process.version,
        rounds: ROUNDS,
        durationSeconds: DURATION_SECONDS,
        pages,
      },
      null,
      2,
    );
    console.log(text);
    // The 10M run keeps its own file beside the default 1M one.
    const name = PAGES_ROWS === 1_000_000 ? 'pages.json' : `pages-${PAGES_ROWS}.json`;
    await writeFile(new URL(`./results/${name}`, import.meta.url), text + '\n');
  } else {
    const loadAtStart = loadavg().map((value) => round(value, 2));
    const generators = await generatorCheck();

    const api = [];
    for (const rows of SIZES) api.push(await apiForSize(dir, rows));
    const stream = await streamLargeTable(dir, STREAM_ROWS);
    const pages = await pagesAgainstNginx(dir, PAGES_ROWS);
    const edge = await edgeCost(dir, EDGE_ROWS);
    const underWrites = [];
    for (const rows of WRITES_ROWS) underWrites.push(await apiUnderWrites(dir, rows));

    const csv = join(dir, 'users.csv');
    await writeSample(csv, IMPORT_ROWS);
    const parse = await timed(() => parseOnly(csv));
    const parseRowsPerSecond = round(parse.result / parse.seconds);
    const sqlite = await importInto(sqliteEnv(join(dir, 'import.db')), csv, dir);

    let mariadb: unknown = { skipped: `missing ${missingMariadbBinaries().join(', ')}` };
    let replica: unknown = mariadb;
    let pairWrites: unknown = mariadb;
    if (options['skip-mariadb']) mariadb = replica = pairWrites = { skipped: '--skip-mariadb' };
    else if (missingMariadbBinaries().length === 0) {
      // A failure here is reported in the results, not allowed to lose the figures above.
      try {
        pair = await startMariadbPair();
        // /api from the replica first, on 1,000 users; then the import replaces them.
        replica = await apiFromReplica(pair, dir);
        pairWrites = await writeLatencyOnPair(pair, dir);
      } catch (error) {
        replica = { failed: String(error) };
      }
      try {
        if (pair === undefined) throw new Error('the MariaDB pair did not start');
        const imported = await importInto(
          { DATABASE_URL: pair.primary.url, DATABASE_REPLICA_URLS: pair.replica.url },
          csv,
          dir,
        );
        mariadb = {
          ...imported,
          ratioToParseOnly: ratio(imported.rowsPerSecond, parseRowsPerSecond),
        };
      } catch (error) {
        mariadb = { failed: String(error) };
      }
    }

    const results = {
      machine: {
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model,
        memoryGB: round(totalmem() / 2 ** 30, 1),
        node: process.version,
        loadAverageAtStart: loadAtStart,
        loadAverageAtEnd: loadavg().map((value) => round(value, 2)),
      },
      date: new Date().toISOString(),
      settings: {
        sizes: SIZES,
        streamRows: STREAM_ROWS,
        importRows: IMPORT_ROWS,
        durationSeconds: DURATION_SECONDS,
        warmupSeconds: WARMUP_SECONDS,
        connections: CONNECTIONS,
        rounds: ROUNDS,
        generator: GENERATOR === 'wrk' ? 'wrk -t2' : 'autocannon (1 thread)',
      },
      loadGeneratorCheck: {
        helloWorld: generators,
        note: 'the same node:http hello-world under each generator: a higher wrk figure means autocannon was the ceiling',
      },
      api,
      stream,
      pages,
      edge,
      import: {
        parseAndValidateOnly: {
          rows: parse.result,
          seconds: round(parse.seconds, 2),
          rowsPerSecond: parseRowsPerSecond,
        },
        sqlite: { ...sqlite, ratioToParseOnly: ratio(sqlite.rowsPerSecond, parseRowsPerSecond) },
        mariadb,
      },
      apiReadsFromReplica: replica,
      apiUnderSingleUserWrites: underWrites,
      singleUserWritesOnMariadbPair: pairWrites,
    };
    const text = JSON.stringify(results, null, 2);
    console.log(text);
    await writeFile(new URL('./results/latest.json', import.meta.url), text + '\n');
  }
} finally {
  await pair?.stop();
  await rm(dir, { recursive: true, force: true });
}
