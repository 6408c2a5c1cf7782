/**
 * Benchmarks, printed as one JSON object (and saved to bench/results/latest.json). Never asserts:
 * every figure comes with a baseline measured in the same run on the same machine, and the
 * ratio between them is what to compare across runs.
 *
 *   npm run bench                 # everything (about 2 minutes)
 *   npm run bench -- --rows 200000 --duration 5
 */
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { pino } from 'pino';
import { buildApp } from '../src/app.js';
import { loadConfig, type Config } from '../src/config/config.js';
import type { RawEnv } from '../src/config/env.js';
import { migrateToLatest } from '../src/db/migrate-to-latest.js';
import { openDatabase } from '../src/db/open-database.js';
import { countUsers } from '../src/db/users-repository.js';
import { createMetrics } from '../src/metrics/create-metrics.js';
import { decodeUtf8 } from '../src/importer/decode-utf8.js';
import { fileImportSource } from '../src/importer/import-source.js';
import { importUsers } from '../src/importer/import-users.js';
import { readCsvRecords } from '../src/importer/read-csv-records.js';
import { validateUser } from '../src/users/validate-user.js';
import { generateUsers } from '../scripts/generate-users-lib.js';
import {
  missingMariadbBinaries,
  startMariadbPair,
  type MariadbPair,
} from '../scripts/mariadb-pair.js';

const { values: options } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000' },
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '32' },
  },
});
const ROWS = Number(options.rows);
const DURATION_SECONDS = Number(options.duration);
const CONNECTIONS = Number(options.connections);

const round = (value: number, digits = 0) => Number(value.toFixed(digits));

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
  let rows = 0;
  for await (const records of readCsvRecords(decodeUtf8(fileImportSource(path, 'csv').open()))) {
    for (const record of records) if ('raw' in record && validateUser(record.raw).ok) rows += 1;
  }
  return rows;
}

async function importInto(env: RawEnv, path: string, dir: string) {
  const config = loadConfig({ LOG_LEVEL: 'silent', ...env }, dir);
  const db = openDatabase(config.database);
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

async function load(url: string) {
  const result = await autocannon({
    url,
    connections: CONNECTIONS,
    duration: DURATION_SECONDS,
    pipelining: 1,
  });
  return {
    requestsPerSecond: round(result.requests.average),
    latencyP50Ms: result.latency.p50,
    latencyP99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  };
}

/** A bare node:http server answering the same bytes from memory: the ceiling for /api. */
async function baselineServer(body: Buffer) {
  const server = createServer((_request, response) => {
    response.writeHead(200, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': body.length,
    });
    response.end(body);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('no address');
  return { url: `http://127.0.0.1:${address.port}/api`, close: () => server.close() };
}

async function apiFromReplica(pair: MariadbPair, dir: string) {
  const config: Config = loadConfig(
    {
      DATABASE_URL: pair.primary.url,
      DATABASE_REPLICA_URLS: pair.replica.url,
      DATA_FILE: join(dir, 'users-1k.csv'),
      LOG_LEVEL: 'silent',
    },
    dir,
  );
  await writeSample(config.dataFile, 1000);
  const db = openDatabase(config.database);
  await migrateToLatest(db);
  await importUsers(db, fileImportSource(config.dataFile, 'csv'), 'replace');
  const countUsersRows = () => db.read(countUsers);
  const app = buildApp({
    config,
    db,
    logger: pino({ level: 'silent' }),
    metrics: createMetrics({ countUsersRows, processMetrics: false }),
    countUsersRows,
    version: 'bench',
    now: Date.now,
    startedAt: Date.now(),
  });
  const url = `${await app.listen({ port: 0, host: '127.0.0.1' })}/api`;
  try {
    const body = Buffer.from(await (await fetch(url)).arrayBuffer());
    const baseline = await baselineServer(body);
    try {
      const service = await load(url);
      const bare = await load(baseline.url);
      const replica = db.replicaStates()[0];
      return {
        users: 1000,
        bodyBytes: body.length,
        servedByReplica: replica?.healthy === true,
        service,
        baselineNodeHttp: bare,
        ratioToBaseline: round(service.requestsPerSecond / bare.requestsPerSecond, 3),
      };
    } finally {
      baseline.close();
    }
  } finally {
    await app.close();
    await db.close();
  }
}

const dir = await mkdtemp(join(tmpdir(), 'users-api-bench-'));
let pair: MariadbPair | undefined;
try {
  const csv = join(dir, 'users.csv');
  await writeSample(csv, ROWS);
  const parse = await timed(() => parseOnly(csv));
  const parseRowsPerSecond = round(parse.result / parse.seconds);
  const sqlite = await importInto({ DATABASE_URL: `sqlite:${join(dir, 'bench.db')}` }, csv, dir);

  let mariadb: unknown = { skipped: `missing ${missingMariadbBinaries().join(', ')}` };
  let api: unknown = mariadb;
  if (missingMariadbBinaries().length === 0) {
    pair = await startMariadbPair();
    const imported = await importInto(
      { DATABASE_URL: pair.primary.url, DATABASE_REPLICA_URLS: pair.replica.url },
      csv,
      dir,
    );
    mariadb = {
      ...imported,
      ratioToParseOnly: round(imported.rowsPerSecond / parseRowsPerSecond, 3),
    };
    api = await apiFromReplica(pair, dir);
  }

  const results = {
    machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, node: process.version },
    date: new Date().toISOString(),
    settings: { rows: ROWS, durationSeconds: DURATION_SECONDS, connections: CONNECTIONS },
    import: {
      parseAndValidateOnly: {
        rows: parse.result,
        seconds: round(parse.seconds, 2),
        rowsPerSecond: parseRowsPerSecond,
      },
      sqlite: { ...sqlite, ratioToParseOnly: round(sqlite.rowsPerSecond / parseRowsPerSecond, 3) },
      mariadb,
    },
    apiReadsFromReplica: api,
  };
  const text = JSON.stringify(results, null, 2);
  console.log(text);
  await writeFile(new URL('./results/latest.json', import.meta.url), text + '\n');
} finally {
  await pair?.stop();
  await rm(dir, { recursive: true, force: true });
}
