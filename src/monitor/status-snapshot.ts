import type { ReplicaState, TargetState } from '../db/database.js';
import type { HaproxyView } from './status-haproxy.js';
import type { StatusDatabase, StatusSnapshot } from './status-snapshot-schema.js';
import type { Traffic } from './status-traffic.js';

/** A configured MySQL server: its label on the status page, and the names it must not show. */
export interface LabelledServer {
  /** `primary`, `replica 1`, … */
  label: string;
  /** host:port, as the topology monitor names it. */
  name: string;
  host: string;
}

/** The health JSON's checks, as much of them as the snapshot reads (see health-routes.ts). */
export interface HealthReading {
  checks: Record<string, { componentId?: string; status: string; output?: string }[]>;
}

export interface StatusSnapshotDependencies {
  serverName: string;
  version: string;
  now: () => number;
  startedAt: number;
  /** MySQL: the configured primary, then the replicas in order. SQLite: undefined. */
  servers: readonly LabelledServer[] | undefined;
  primaryState: () => TargetState;
  replicaStates: () => ReplicaState[];
  /** The health JSON `/healthcheck?format=json` answers: its checks say what is wrong. */
  health: () => Promise<HealthReading>;
  countUsersRows: () => Promise<number>;
  readDataVersion: () => Promise<number>;
  lastImport: () => StatusSnapshot['lastImport'];
  lastBackup: () => Promise<{ at: string; rows: number; bytes: number | undefined } | undefined>;
  /** Undefined when HAPROXY_STATS_URL is not set. */
  haproxy: (() => Promise<HaproxyView>) | undefined;
  traffic: () => Traffic;
}

/** Where a problem's words come from, when its check carries no componentId worth showing. */
const CHECK_SUBJECTS: Record<string, string> = {
  'database:responseTime': 'reads',
  'database:primary': 'writes',
  'users:rows': 'users table',
  'startup:steps': 'start-up',
  'process:lifecycle': 'this instance',
};

/**
 * Builds the status snapshot from the readings the health JSON and `/metrics` already give: the
 * topology monitor's server states, the health checks (every check that carries an `output` is
 * something wrong, said in the health JSON's own words, so there is no second set of rules
 * here), the cached row count, the backup status file, the import counter and the request
 * histogram. Host names are replaced by the servers' labels everywhere, reasons included.
 */
export function createStatusSnapshot(
  deps: StatusSnapshotDependencies,
): () => Promise<StatusSnapshot> {
  const scrub = scrubber(deps.servers ?? []);
  return async () => {
    const nowMs = deps.now();
    const [health, rows, version, backup, haproxy] = await Promise.all([
      deps.health(),
      settle(deps.countUsersRows()),
      settle(deps.readDataVersion()),
      settle(deps.lastBackup()),
      deps.haproxy === undefined ? undefined : deps.haproxy(),
    ]);
    const problems: string[] = [];
    for (const [key, checks] of Object.entries(health.checks)) {
      for (const check of checks) {
        if (check.output === undefined) continue;
        const subject =
          key === 'database:replicationLag'
            ? scrub(check.componentId ?? 'replica')
            : (CHECK_SUBJECTS[key] ?? key);
        problems.push(`${subject}: ${scrub(check.output)}`);
      }
    }
    if (!backup.ok) problems.push(`backups: cannot read the backup status file (${backup.why})`);
    if (haproxy !== undefined) problems.push(...haproxy.problems);
    const backupRecord = backup.ok ? backup.value : undefined;
    return {
      at: new Date(nowMs).toISOString(),
      instance: {
        name: deps.serverName,
        version: deps.version,
        uptimeSeconds: Math.max(0, Math.round((nowMs - deps.startedAt) / 1000)),
      },
      databases:
        deps.servers === undefined
          ? [sqliteDatabase(health)]
          : describeServers(deps.servers, deps.primaryState(), deps.replicaStates(), scrub),
      data: {
        version: version.ok ? version.value : null,
        rows: rows.ok ? rows.value : null,
      },
      lastImport: deps.lastImport(),
      lastBackup:
        backupRecord === undefined
          ? null
          : {
              at: backupRecord.at,
              ageSeconds: Math.max(0, Math.round((nowMs - Date.parse(backupRecord.at)) / 1000)),
              bytes: backupRecord.bytes ?? null,
              verified: true,
              rows: backupRecord.rows,
            },
      problems,
      haproxy: haproxy === undefined ? null : { active: haproxy.active, servers: haproxy.servers },
      traffic: deps.traffic(),
    };
  };
}

/** SQLite: one file, readable or not, as the readiness read found it. */
function sqliteDatabase(health: HealthReading): StatusDatabase {
  const reads = health.checks['database:responseTime']?.[0];
  const failed = reads?.status === 'fail';
  return {
    name: 'sqlite',
    role: 'sqlite',
    reachable: !failed,
    healthy: !failed,
    reason: failed ? (reads?.output ?? 'cannot read the users table') : null,
    lagSeconds: null,
  };
}

/**
 * Every configured MySQL server, in configuration order. The server writes go to is `primary`
 * (a promoted replica too); the others serve reads, with the state the read router keeps.
 */
function describeServers(
  servers: readonly LabelledServer[],
  primary: TargetState,
  readers: readonly ReplicaState[],
  scrub: (text: string) => string,
): StatusDatabase[] {
  return servers.map((server, index) => {
    const isWriter = index === 0 ? primary.writer === 'primary' : primary.writer === server.name;
    const reader = readers.find((candidate) => candidate.name === server.name);
    const writable = primary.writers?.includes(server.name);
    let reason: string | undefined;
    let healthy: boolean;
    if (isWriter) {
      healthy = primary.healthy;
      reason = primary.reason;
    } else if (reader !== undefined) {
      healthy = reader.healthy;
      reason = reader.reason;
    } else {
      // Neither the writer nor serving reads: writes are refused (a split brain, where this one
      // answered as writable), and the monitor's reason for that is the primary's.
      healthy = false;
      reason = primary.reason ?? 'not in use';
    }
    const reachable = reason === undefined || !reason.startsWith('unreachable');
    return {
      name: server.label,
      role: isWriter ? 'primary' : 'replica',
      reachable,
      ...(reachable && { writable: writable === true }),
      healthy,
      reason: reason === undefined ? null : scrub(reason),
      lagSeconds: isWriter ? null : (reader?.lagSeconds ?? null),
    };
  });
}

/**
 * Replaces every configured server's host:port with its label, then its host alone (with the
 * label when no other server shares that host, else `a database host`).
 */
function scrubber(servers: readonly LabelledServer[]): (text: string) => string {
  const shared = (host: string) => servers.filter((server) => server.host === host).length > 1;
  const names: [string, string][] = [
    // Longest first: `db:33060` must not be read as `db:3306` followed by a 0.
    ...servers
      .map((server): [string, string] => [server.name, server.label])
      .sort(([a], [b]) => b.length - a.length),
    ...servers.map((server): [string, string] => [
      server.host,
      shared(server.host) ? 'a database host' : server.label,
    ]),
  ];
  return (text) => names.reduce((result, [name, label]) => result.replaceAll(name, label), text);
}

type Settled<T> = { ok: true; value: T } | { ok: false; why: string };

/** A reading that may fail without failing the snapshot: the failure says why, in a few words. */
async function settle<T>(promise: Promise<T>): Promise<Settled<T>> {
  try {
    return { ok: true, value: await promise };
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    return { ok: false, why: typeof code === 'string' ? code : 'unreadable' };
  }
}
