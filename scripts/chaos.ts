/**
 * The chaos soak: brings up the fault lab (scripts/fault-lab.ts), runs a mixed, bounded load
 * through HAProxy (scripts/chaos-load.ts, in a worker thread), injects the lab's faults one at a
 * time, chosen and timed by a seeded PRNG, heals each and waits for the lab to be calm again,
 * then checks the invariants and writes a report (scripts/chaos-report.ts). See docs/fault-lab.md.
 *
 *   npm run chaos -- --minutes N --seed S [--out DIR]
 *
 * Exit 0 when every invariant held, 1 when one did not (the report says which), 2 on bad usage.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import { createRandom, type ChaosLoadMessage, type ChaosLoadOptions } from './chaos-load.js';
import {
  describeFaults,
  describeSwitchovers,
  errorsByKind,
  faultLabel,
  isAcknowledged,
  percentile,
  recoveryMedians,
  renderTimeline,
  windowStats,
  type ChaosFault,
  type ChaosSample,
} from './chaos-report.js';
import {
  currentPrimary,
  DATABASE_HOSTS,
  isLabProcessRunning,
  LAB_HOSTS,
  startLab,
  waitForReplication,
  type DatabaseHost,
  type FaultName,
  type Lab,
  type LabHost,
} from './fault-lab.js';

/**
 * The faults the soak draws from, with their targets, and planned switchovers. Never HAProxy: the
 * lab has one load balancer, so a fault there is an outage by design, not a promise to check.
 * Never two hosts at once, so that at every instant at least two of the three database servers
 * are reachable. Database targets are roles (see hostInRole): after a switchover `primary` hits
 * the server that is the primary then.
 */
const CATALOGUE: {
  name: FaultName | 'switchover';
  targets: LabHost[];
  args?: (random: () => number) => string[];
}[] = [
  { name: 'kill', targets: ['webserver1', 'webserver2', 'primary', 'replica1', 'replica2'] },
  { name: 'freeze', targets: ['webserver1', 'webserver2', 'primary', 'replica1', 'replica2'] },
  {
    name: 'partition',
    targets: ['webserver1', 'webserver2', 'primary', 'replica1', 'replica2'],
  },
  {
    name: 'oneway',
    targets: ['webserver1', 'webserver2', 'primary', 'replica1', 'replica2'],
    args: (random) => [random() < 0.5 ? 'in' : 'out'],
  },
  {
    name: 'loss',
    targets: ['webserver1', 'webserver2', 'primary', 'replica1', 'replica2'],
    args: (random) => [String(2 + Math.floor(random() * 9))],
  },
  {
    name: 'slow',
    targets: ['primary', 'replica1', 'replica2'],
    args: (random) => {
      const delay = 50 + Math.floor(random() * 4) * 50;
      return [String(delay), String(delay / 5), String(Math.floor(random() * 3))];
    },
  },
  { name: 'lag', targets: ['replica1', 'replica2'] },
  { name: 'diskfull', targets: ['primary', 'replica1', 'replica2'] },
  // A replica becomes the primary (the old one its replica): never a promotion, which may lose
  // acknowledged writes by design.
  { name: 'switchover', targets: ['replica1', 'replica2'] },
];

/**
 * The host in a drawn role now: `primary` is the writable server, `replica1` and `replica2` the
 * other two in the lab's order; web servers are themselves.
 */
function hostInRole(lab: Lab, role: LabHost): LabHost {
  if (!(DATABASE_HOSTS as readonly string[]).includes(role)) return role;
  const primary = currentPrimary(lab.state);
  if (role === 'primary') return primary;
  const replicas = DATABASE_HOSTS.filter((host) => host !== primary);
  return replicas[role === 'replica1' ? 0 : 1]!;
}

const execFileAsync = promisify(execFile);
const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));

/**
 * `users-api db switchover --to HOST` run as an operator would, from the runner, with the lab's
 * admin and replication accounts. Its configuration names each server itself (port 3306), not
 * the apps' delay proxies, so that replication stays direct after the switch as before it.
 * Returns the command's own figures; throws with its last line when it exits non-zero.
 */
async function switchover(lab: Lab, to: DatabaseHost) {
  const url = (host: DatabaseHost) =>
    `mysql://app:${lab.state.appPassword}@${lab.address(host)}:3306/users`;
  const adminFile = join(lab.state.dir, 'db-admin-url');
  const replicationFile = join(lab.state.dir, 'db-repl-password');
  writeFileSync(adminFile, `mysql://users-admin:${lab.state.dbAdminPassword}@lab/\n`, {
    mode: 0o600,
  });
  writeFileSync(replicationFile, lab.state.replPassword, { mode: 0o600 });
  try {
    const { stdout } = await execFileAsync(
      process.execPath,
      [
        MAIN,
        'db',
        'switchover',
        '--to',
        `${lab.address(to)}:3306`,
        '--admin-url-file',
        adminFile,
        '--replication-password-file',
        replicationFile,
      ],
      {
        env: {
          PATH: process.env.PATH ?? '',
          DATABASE_URL: url('primary'),
          DATABASE_REPLICA_URLS: `${url('replica1')},${url('replica2')}`,
        },
        timeout: 60_000,
      },
    );
    const summary = /in (\d+) ms; writes paused (\d+) ms/.exec(stdout);
    if (summary === null) throw new Error(`no summary line in: ${stdout}`);
    return { durationMs: Number(summary[1]), writesPausedMs: Number(summary[2]) };
  } catch (error) {
    const { stderr, stdout } = error as { stderr?: string; stdout?: string };
    const last = `${stdout ?? ''}${stderr ?? ''}`.trim().split('\n').at(-1);
    throw new Error(last ?? (error as Error).message, { cause: error });
  }
}

export interface ChaosOptions {
  minutes: number;
  seed: number;
  /** Report folder (made if missing). */
  out: string;
  /** Fault duration bounds, ms (default 4–15 s). */
  faultMs?: [number, number];
  /** Pause after calm before the next fault, ms (default 2–6 s). */
  gapMs?: [number, number];
  load?: Partial<Pick<ChaosLoadOptions, 'readers' | 'writeEveryMs' | 'bulkRows'>>;
  /** Progress lines (default: stderr). */
  log?: (line: string) => void;
}

/** How long the lab may take to be calm after a heal before the soak calls it not recovered. */
const CALM_BUDGET_MS = 90_000;

/**
 * Calm: both web servers report `pass` (every database reachable, replicas in rotation, the
 * primary writable) and write to the current primary, HAProxy serves through webserver1, and the
 * other two servers have applied all the primary has written. Returns the reason it is not calm,
 * or undefined.
 */
async function notCalm(lab: Lab): Promise<string | undefined> {
  const primary = currentPrimary(lab.state);
  for (const host of ['webserver1', 'webserver2'] as const) {
    const response = await fetch(`${lab.webUrl(host)}/healthcheck`, {
      headers: { accept: 'application/health+json' },
      signal: AbortSignal.timeout(3000),
    });
    const body = (await response.json()) as {
      status?: string;
      checks?: Record<string, { output?: string }[]>;
    };
    if (body.status !== 'pass') return `${host}: ${JSON.stringify(body)}`;
    // After a switchover an instance writes to the new primary once its probe has seen it; until
    // then it still writes to the old one, now read-only, and its health may say pass.
    const output = body.checks?.['database:primary']?.[0]?.output ?? '';
    const writesTo = /writes go to (\S+),/.exec(output)?.[1];
    const expected = primary === 'primary' ? undefined : lab.address(primary);
    if (writesTo?.split(':')[0] !== expected)
      return `${host} writes to ${writesTo ?? 'the configured primary'}, not ${primary}`;
  }
  const lb = await fetch(`${lab.lbUrl}/healthcheck`, { signal: AbortSignal.timeout(3000) });
  await lb.arrayBuffer();
  if (lb.headers.get('x-served-by') !== 'webserver1')
    return `HAProxy served through ${lb.headers.get('x-served-by') ?? 'nobody'} (${lb.status})`;
  const position = lab.sql(primary, 'SELECT @@gtid_binlog_pos', 3000).trim();
  for (const replica of DATABASE_HOSTS.filter((host) => host !== primary)) {
    const reached = lab.sql(replica, `SELECT MASTER_GTID_WAIT('${position}', 0)`, 3000).trim();
    if (reached !== '0') return `${replica} has not applied ${position}`;
  }
  return undefined;
}

async function waitForCalm(lab: Lab, budgetMs: number): Promise<{ at?: number; last: string }> {
  const deadline = Date.now() + budgetMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const reason = await notCalm(lab);
      if (reason === undefined) return { at: Date.now(), last: 'calm' };
      last = reason;
    } catch (error) {
      last = String(error);
    }
    await sleep(250);
  }
  return { last };
}

/** Each soak user name's row count on `host`, read as root through the server's socket. */
function rowCounts(lab: Lab, host: DatabaseHost): Map<string, number> {
  const output = lab.sql(
    host,
    "SELECT name, COUNT(*) FROM users.users WHERE name LIKE 'Chaos %' GROUP BY name",
  );
  const counts = new Map<string, number>();
  for (const line of output.split('\n')) {
    if (line === '') continue;
    const [name, count] = line.split('\t');
    counts.set(name!, Number(count));
  }
  return counts;
}

const isWrite = (sample: ChaosSample) => sample.kind === 'append' || sample.kind === 'create';
const writeKey = (sample: ChaosSample) => (sample.names ?? []).join('\n');

/** Web-server faults after which no one can finish a response the server had begun. */
const WEB_SERVER_LOSSES = new Set(['kill', 'freeze', 'partition', 'oneway']);

/**
 * The invariants, from the samples, the faults and the row counts on every database server:
 *
 * - reads: at every instant at least two of the three database servers are reachable (one fault
 *   at a time, never on HAProxy), so every read must succeed: an answer within 45 s, status 200,
 *   a whole body. The one exception is a response already begun by a web server that is then
 *   killed, frozen or cut off from the network (partition, one-way): HAProxy replays only
 *   requests with no response byte yet (retry-on), a client has the status line already, and
 *   the server holding the rest cannot send it (nor, cut off, reach a database): no one can
 *   replay it. Each such case is listed.
 * - acknowledged writes: every user of every 2xx write is on every database server exactly once.
 * - refused writes are whole or absent: a refused append or create is on every server or on none,
 *   all its rows or none (one present is a commit the client was told failed: listed as in doubt).
 * - healthy at the end: every lab process running, the lab calm (see notCalm).
 */
function checkInvariants(
  samples: ChaosSample[],
  faults: ChaosFault[],
  counts: Record<DatabaseHost, Map<string, number>>,
) {
  const webServerLosses = faults.filter(
    (fault) => WEB_SERVER_LOSSES.has(fault.name) && fault.target.startsWith('webserver'),
  );
  const readFailures = samples.filter((sample) => !isWrite(sample) && sample.failure !== undefined);
  const cutWithItsWebServer = (sample: ChaosSample) => {
    const { headersMs } = sample;
    return (
      headersMs !== undefined &&
      webServerLosses.some(
        (fault) =>
          fault.target === sample.servedBy &&
          // In force between the status line and the cut. A server nothing reaches (oneway in)
          // can still send the status line of a request it had, after the fault began.
          fault.start <= sample.startedAt + sample.ms &&
          fault.healStart >= sample.startedAt + headersMs,
      )
    );
  };
  const describe = (sample: ChaosSample) => ({
    kind: sample.kind,
    path: sample.path,
    at: new Date(sample.startedAt).toISOString(),
    ms: sample.ms,
    status: sample.status,
    servedBy: sample.servedBy ?? null,
    failure: sample.failure,
    ...(sample.names === undefined ? {} : { names: sample.names.slice(0, 3) }),
  });
  const exempt = readFailures.filter(cutWithItsWebServer);
  const failed = readFailures.filter((sample) => !cutWithItsWebServer(sample));

  const lost: string[] = [];
  const duplicated: string[] = [];
  const acknowledged = samples.filter((sample) => isWrite(sample) && isAcknowledged(sample));
  let acknowledgedUsers = 0;
  for (const sample of acknowledged) {
    for (const name of sample.names ?? []) {
      acknowledgedUsers += 1;
      for (const host of DATABASE_HOSTS) {
        const count = counts[host].get(name) ?? 0;
        if (count === 0) lost.push(`${name} on ${host}`);
        if (count > 1) duplicated.push(`${name} on ${host}: ${count} rows`);
      }
    }
  }
  // A write is its users: the load sends a refused one again with the same key and names, so it
  // is refused only if no attempt was acknowledged (its last attempt stands for it).
  const acknowledgedKeys = new Set(acknowledged.map(writeKey));
  const refusedByKey = new Map<string, ChaosSample>();
  for (const sample of samples) {
    if (isWrite(sample) && !acknowledgedKeys.has(writeKey(sample)))
      refusedByKey.set(writeKey(sample), sample);
  }
  const refused = [...refusedByKey.values()];
  const inDoubt: unknown[] = [];
  const notWhole: unknown[] = [];
  for (const sample of refused) {
    const names = sample.names ?? [];
    const perHost = Object.fromEntries(
      DATABASE_HOSTS.map((host) => [host, names.map((name) => counts[host].get(name) ?? 0)]),
    ) as Record<DatabaseHost, number[]>;
    const all = Object.values(perHost).flat();
    if (all.every((count) => count === 0)) continue;
    const record = { ...describe(sample), rowsPerServer: perHost };
    if (all.every((count) => count === 1)) inDoubt.push(record);
    else notWhole.push(record);
  }
  return {
    readsSucceed: {
      pass: failed.length === 0,
      reads: samples.filter((sample) => !isWrite(sample)).length,
      failed: failed.map(describe),
      exemptCutWithItsWebServer: exempt.map(describe),
    },
    acknowledgedWritesOnEveryServerOnce: {
      pass: lost.length === 0 && duplicated.length === 0,
      writes: acknowledged.length,
      users: acknowledgedUsers,
      lost,
      duplicated,
    },
    refusedWritesWholeOrAbsent: {
      pass: notWhole.length === 0,
      refused: refused.length,
      notWhole,
    },
    /** Not an invariant of the issue: a refused write that committed all the same. */
    inDoubt,
  };
}

/** Runs the soak; writes `summary.json` and `timeline.svg` to `options.out`. */
export async function runChaos(options: ChaosOptions) {
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const [faultMin, faultMax] = options.faultMs ?? [4000, 15_000];
  const [gapMin, gapMax] = options.gapMs ?? [2000, 6000];
  const random = createRandom(options.seed);
  const between = (low: number, high: number) => Math.round(low + random() * (high - low));
  mkdirSync(options.out, { recursive: true });
  const startedAt = new Date();
  const lab = await startLab();
  log(`chaos: lab ${lab.state.id} up (${lab.state.subnet}.0/24, files in ${lab.state.dir})`);
  const samples: ChaosSample[] = [];
  const faults: ChaosFault[] = [];
  const loadOptions: ChaosLoadOptions = {
    lbUrl: lab.lbUrl,
    adminToken: lab.state.adminToken,
    seed: options.seed,
    readers: 3,
    writeEveryMs: 1500,
    bulkRows: 3000,
    maxRequests: 100_000,
    ...options.load,
  };
  // The worker runs TypeScript too: on Node 20 it inherits no loader (`--import tsx` in its
  // execArgv is not applied to its entry), so it loads the module through tsx's API.
  const entry = JSON.stringify(new URL('./chaos-load.ts', import.meta.url).href);
  const worker = new Worker(
    `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((api) => api.tsImport(${entry}, ${entry}))`,
    { eval: true, workerData: { chaosLoad: loadOptions } },
  );
  let loadError: string | undefined;
  let resolveReady: () => void = () => undefined;
  const ready = new Promise<void>((resolveIt) => (resolveReady = resolveIt));
  const finished = new Promise<void>((resolveIt) => {
    worker.on('message', (message: ChaosLoadMessage) => {
      if (message.type === 'samples') samples.push(...message.samples);
      else if (message.type === 'ready') resolveReady();
      else if (message.type === 'failed') {
        loadError = message.error;
        resolveReady();
        resolveIt();
      } else resolveIt();
    });
    worker.on('error', (error) => {
      loadError = String(error);
      resolveReady();
      resolveIt();
    });
    worker.on('exit', () => {
      resolveReady();
      resolveIt();
    });
  });
  try {
    await ready;
    if (loadError !== undefined) throw new Error(`the load did not start: ${loadError}`);
    const t0 = Date.now();
    const end = t0 + options.minutes * 60_000;
    log(`chaos: load running; faults for ${options.minutes} min, seed ${options.seed}`);
    await sleep(between(gapMin, gapMax));
    while (Date.now() + faultMin < end && loadError === undefined) {
      const entry = CATALOGUE[Math.floor(random() * CATALOGUE.length)]!;
      const role = entry.targets[Math.floor(random() * entry.targets.length)]!;
      const args = entry.args?.(random) ?? [];
      const duration = Math.min(between(faultMin, faultMax), end - Date.now());
      // After calm exactly one server is writable; when the last fault never calmed there may be
      // none or two, and this one is recorded as not injected rather than ending the soak.
      let target: LabHost = role;
      let unresolved: string | undefined;
      try {
        target = hostInRole(lab, role);
      } catch (error) {
        unresolved = `no ${role} to hit: ${(error as Error).message}`;
      }
      const fault: ChaosFault = {
        name: entry.name,
        target,
        ...(target === role ? {} : { role }),
        args,
        start: Date.now(),
        healStart: 0,
        healed: 0,
        calmAt: undefined,
        ...(unresolved === undefined ? {} : { error: unresolved }),
      };
      faults.push(fault);
      if (unresolved !== undefined) {
        fault.healStart = fault.healed = Date.now();
      } else if (entry.name === 'switchover') {
        // Nothing to heal: it is over when the command returns; then the lab must be calm again.
        try {
          fault.from = currentPrimary(lab.state);
          fault.command = await switchover(lab, target as DatabaseHost);
        } catch (error) {
          fault.error = `switchover: ${(error as Error).message}`;
        }
        fault.healStart = fault.healed = Date.now();
      } else {
        try {
          await lab.fault(entry.name, target, args);
          await sleep(duration);
        } catch (error) {
          fault.error = `inject: ${(error as Error).message}`;
        }
        fault.healStart = Date.now();
        try {
          await lab.heal();
        } catch (error) {
          fault.error = `${fault.error ?? ''}heal: ${(error as Error).message}`;
        }
        fault.healed = Date.now();
      }
      const calm = await waitForCalm(lab, CALM_BUDGET_MS);
      fault.calmAt = calm.at;
      log(
        `chaos: ${faultLabel(fault)} for ${fault.healStart - fault.start} ms, ` +
          (calm.at === undefined
            ? `NOT calm ${CALM_BUDGET_MS} ms after the heal: ${calm.last}`
            : `calm ${calm.at - fault.healStart} ms after the heal`) +
          (fault.error === undefined ? '' : ` (${fault.error})`),
      );
      if (Date.now() + gapMax >= end) break;
      await sleep(between(gapMin, gapMax));
    }
    const t1 = Math.max(Date.now(), Math.min(end, Date.now()));
    worker.postMessage({ type: 'stop' });
    // Every request has its own 45 s timeout: the load ends within that.
    await Promise.race([finished, sleep(60_000)]);

    // The end: nothing in force, the lab calm, replicas caught up, then count every row.
    let endProblem: string | undefined;
    try {
      await lab.heal();
    } catch (error) {
      endProblem = `heal: ${(error as Error).message}`;
    }
    const calm = await waitForCalm(lab, CALM_BUDGET_MS);
    const stopped = LAB_HOSTS.filter((host) => !isLabProcessRunning(lab.state, host));
    try {
      waitForReplication(lab.state, 60);
    } catch (error) {
      endProblem = `${endProblem ?? ''} replication: ${(error as Error).message}`;
    }
    const counts = Object.fromEntries(
      DATABASE_HOSTS.map((host) => [host, rowCounts(lab, host)]),
    ) as Record<DatabaseHost, Map<string, number>>;
    const checks = checkInvariants(samples, faults, counts);
    const healthyAtEnd = {
      pass: calm.at !== undefined && stopped.length === 0 && endProblem === undefined,
      calm: calm.last,
      stopped,
      ...(endProblem === undefined ? {} : { problem: endProblem }),
    };
    const { inDoubt, ...invariants } = checks;
    const allInvariants = { ...invariants, healthyAtEnd };
    const pass = Object.values(allInvariants).every((invariant) => invariant.pass);
    const reads = samples.filter((sample) => !isWrite(sample));
    const sortedReads = reads.map((sample) => sample.ms).sort((a, b) => a - b);
    const faultWindows = describeFaults(samples, faults, t0);
    const outside = reads.filter(
      (sample) =>
        !faults.some(
          (fault) =>
            sample.startedAt >= fault.start && sample.startedAt < (fault.calmAt ?? fault.healed),
        ),
    );
    const sortedOutside = outside.map((sample) => sample.ms).sort((a, b) => a - b);
    const summary = {
      command: `npm run chaos -- --minutes ${options.minutes} --seed ${options.seed}`,
      seed: options.seed,
      minutes: options.minutes,
      startedAt: startedAt.toISOString(),
      loadStartedAt: new Date(t0).toISOString(),
      endedAt: new Date().toISOString(),
      machine: { node: process.version, cpus: (await import('node:os')).cpus().length },
      load: {
        readers: loadOptions.readers,
        writeEveryMs: loadOptions.writeEveryMs,
        bulkRows: loadOptions.bulkRows,
      },
      pass,
      invariants: allInvariants,
      findings: { refusedWritesThatCommitted: inDoubt },
      requests: {
        total: samples.length,
        reads: reads.filter((sample) => sample.kind === 'read').length,
        streams: reads.filter((sample) => sample.kind === 'stream').length,
        writes: samples.filter(isWrite).length,
        perSecond: Math.round((samples.length / ((t1 - t0) / 1000)) * 10) / 10,
        readP50Ms: percentile(sortedReads, 0.5),
        readP99Ms: percentile(sortedReads, 0.99),
        readMaxMs: sortedReads.at(-1) ?? 0,
        outsideFaults: windowStats(outside, 0, Number.MAX_SAFE_INTEGER),
        outsideFaultsP99Ms: percentile(sortedOutside, 0.99),
      },
      errorsByKind: errorsByKind(samples),
      faultsInjected: faults.length,
      switchovers: describeSwitchovers(samples, faults, Object.values(counts)),
      recoveryMedianMsByFault: recoveryMedians(faults),
      faults: faultWindows,
      ...(loadError === undefined ? {} : { loadError }),
    };
    const svg = renderTimeline({
      samples,
      faults,
      t0,
      t1,
      title: `users-api chaos soak: ${options.minutes} min, seed ${options.seed}, ${faults.length} faults, ${samples.length} requests, ${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC`,
    });
    writeFileSync(join(options.out, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
    writeFileSync(join(options.out, 'timeline.svg'), svg);
    writeFileSync(
      join(options.out, 'samples.ndjson'),
      samples.map((sample) => JSON.stringify(sample)).join('\n') + '\n',
    );
    return { summary, out: options.out };
  } finally {
    worker.postMessage({ type: 'stop' });
    await worker.terminate();
    // The lab's folder goes with it: its logs are what explains a failed invariant.
    try {
      cpSync(lab.state.dir, join(options.out, 'lab'), {
        recursive: true,
        filter: (path) => !path.includes('/disk') && !/\.(sock|pid)$/.test(path),
      });
    } catch (error) {
      // Said, not thrown: the lab must still come down, and the verdict does not depend on it.
      log(`chaos: the lab's logs were not kept: ${String(error)}`);
    }
    await lab.down();
  }
}

function parseArgs(argv: string[]): ChaosOptions {
  const options: Partial<ChaosOptions> = {};
  for (let i = 0; i < argv.length; i += 1) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (value === undefined) throw new Error(`usage: ${flag} needs a value`);
    i += 1;
    if (flag === '--minutes') options.minutes = Number(value);
    else if (flag === '--seed') options.seed = Number(value);
    else if (flag === '--out') options.out = resolve(value);
    else throw new Error(`usage: unknown option ${flag}`);
  }
  if (!(options.minutes !== undefined && options.minutes > 0))
    throw new Error('usage: npm run chaos -- --minutes N --seed S [--out DIR]');
  if (!Number.isInteger(options.seed)) throw new Error('usage: --seed takes an integer');
  return {
    minutes: options.minutes,
    seed: options.seed!,
    out: options.out ?? mkdtempSync(join(tmpdir(), 'users-api-chaos-')),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    const options = parseArgs(process.argv.slice(2));
    const { summary, out } = await runChaos(options);
    const { invariants } = summary;
    console.log(
      [
        `chaos: ${summary.faultsInjected} faults, ${summary.requests.total} requests, read p99 ${summary.requests.readP99Ms} ms`,
        ...Object.entries(invariants).map(
          ([name, invariant]) => `  ${invariant.pass ? 'PASS' : 'FAIL'} ${name}`,
        ),
        `  refused writes that committed anyway: ${summary.findings.refusedWritesThatCommitted.length}`,
        ...summary.switchovers.map(
          (each) =>
            `  ${each.switchover} from ${each.from}: ${each.error ?? `command ${each.commandMs} ms`}, writes paused ${each.writesPausedMs} ms (load), lost ${each.writesLost}`,
        ),
        `report: ${out}/summary.json, ${out}/timeline.svg`,
      ].join('\n'),
    );
    process.exitCode = summary.pass ? 0 : 1;
  } catch (error) {
    console.error(`chaos: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = /usage/.test(String(error)) ? 2 : 1;
  }
}
