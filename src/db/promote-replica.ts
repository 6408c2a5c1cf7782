import {
  AdminOperationError,
  describeAdminFailure,
  sessionOf,
  stateOf,
  type AdminServer,
  type AdminCommandOptions,
  withAdminServers,
} from './admin-topology.js';
import {
  changePrimary,
  readBinlogPosition,
  setReadOnly,
  stopAndForgetPrimary,
  waitForGtid,
} from './dialects/mysql/switchover-sql.js';
import { gtidBehind } from './gtid-position.js';
import { checkFollower, repoint, type FollowerResult } from './switchover.js';

export interface PromoteOptions extends AdminCommandOptions {
  /** The replica to make the primary: host:port of a configured server. */
  host: string;
  /** Without it the data-loss window is stated and nothing changes (`precondition`… see CLI). */
  yes: boolean;
  /** Longest wait for the target to apply what it has already received before it takes writes. */
  timeoutSeconds: number;
}

export interface PromoteResult {
  promoted: string;
  /** The GTID position the new primary started from. */
  position: string;
  durationMs: number;
  followers: FollowerResult[];
  /** Configured servers that did not answer: to be rebuilt or rejoined by hand. */
  unreachable: string[];
}

/** Thrown (kind `bad-input`) when the window was stated but `--yes` was not given. */
export const CONFIRMATION_REQUIRED = 'confirmation required';

/**
 * Failover when the primary is gone: states the data-loss window (asynchronous replication:
 * what HOST received and applied against what the other servers received), and only with
 * `yes` applies what HOST has received, makes it writable and points the other reachable
 * replicas at it. Refused while any other server is writable (then use `switchover`).
 */
export async function promoteReplica(options: PromoteOptions): Promise<PromoteResult> {
  const now = options.now ?? Date.now;
  const { log } = options;
  const startedAt = now();
  return withAdminServers(options, options.host, async (servers, wanted) => {
    const target = servers.find((server) => server.name === wanted.name)!;
    const reachable = servers.filter((server) => server.state !== undefined);
    const unreachable = servers.filter((server) => server.state === undefined);
    for (const server of unreachable) log(`   ${server.name}: ${server.failure}`);
    if (target.state === undefined) {
      throw new AdminOperationError(
        'precondition',
        `cannot promote ${target.name}: ${target.failure}`,
      );
    }
    if (target.state.flavor !== 'mariadb') {
      throw new AdminOperationError(
        'precondition',
        `${target.name} runs ${target.state.version}: db promote supports MariaDB only`,
      );
    }
    const writable = reachable.filter((server) => !stateOf(server).readOnly);
    if (writable.includes(target)) {
      throw new AdminOperationError('precondition', `${target.name} is already writable`);
    }
    if (writable.length > 0) {
      throw new AdminOperationError(
        'precondition',
        `${writable.map((server) => server.name).join(', ')} is writable: the primary is up. Use db switchover --to ${target.name}, which loses no write`,
      );
    }
    const replica = target.state.replica;
    if (replica === undefined) {
      throw new AdminOperationError('precondition', `${target.name} is not a replica`);
    }
    const others = reachable.filter(
      (server) => server !== target && stateOf(server).replica !== undefined,
    );
    stateWindow(
      target,
      reachable.filter((server) => server !== target),
      unreachable,
      log,
    );
    if (!options.yes) {
      throw new AdminOperationError(
        'bad-input',
        `${CONFIRMATION_REQUIRED}: nothing changed; run again with --yes to promote ${target.name}`,
      );
    }

    const session = sessionOf(target);
    const received = replica.gtidIoPos;
    log(
      `1. ${target.name}: applying what it received (${received || 'nothing'}), up to ${options.timeoutSeconds}s`,
    );
    if (!(await waitForGtid(session, received, options.timeoutSeconds))) {
      throw new AdminOperationError(
        'precondition',
        `${target.name} did not apply ${received} within ${options.timeoutSeconds}s (SQL thread ${replica.sqlRunning}${replica.lastError === '' ? '' : `: ${replica.lastError}`}); nothing changed`,
      );
    }
    log(`2. ${target.name}: STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only=0`);
    try {
      await stopAndForgetPrimary(session);
      await setReadOnly(session, false, options.timeoutSeconds);
    } catch (error) {
      throw new AdminOperationError(
        'incomplete',
        `promoting ${target.name} failed half-way (${describeAdminFailure(error)}): check its replication and read_only by hand`,
        { cause: error },
      );
    }
    const position = await readBinlogPosition(session);
    log(`   writes go to ${target.name} from ${position}`);
    const followers: FollowerResult[] = [];
    for (const other of others) {
      log(`3. ${other.name}: replicates from ${target.name} (MASTER_USE_GTID=slave_pos)`);
      const follower = await repoint(other, target, log, (session) =>
        changePrimary(session, target),
      );
      if (follower.ok) {
        Object.assign(follower, await checkFollower(other, target, position));
        log(`   ${other.name}: ${follower.detail}`);
      }
      followers.push(follower);
    }
    for (const server of unreachable) {
      log(
        `   ${server.name} did not answer: when it is back it must stay read-only (read_only=ON in its my.cnf); rebuild it from ${target.name}, as it may hold writes no replica received`,
      );
    }
    return {
      promoted: target.name,
      position,
      durationMs: now() - startedAt,
      followers,
      unreachable: unreachable.map((server) => server.name),
    };
  });
}

/** Prints what promoting `target` keeps and what it may lose, against every other server. */
function stateWindow(
  target: AdminServer,
  others: readonly AdminServer[],
  unreachable: readonly AdminServer[],
  log: (line: string) => void,
): void {
  const replica = stateOf(target).replica!;
  const primaryName = `${replica.masterHost}:${replica.masterPort}`;
  log(
    `data-loss window (asynchronous replication): ${target.name} received up to ${replica.gtidIoPos || '(nothing)'} from ${primaryName} ` +
      `and has applied ${stateOf(target).gtidSlavePos || '(nothing)'} (I/O thread ${replica.ioRunning}, ${replica.lagSeconds === null ? 'lag unknown' : `${replica.lagSeconds}s behind`})`,
  );
  const primaryAnswers = others.find(
    (server) => stateOf(server).serverId === replica.masterServerId && stateOf(server).readOnly,
  );
  if (primaryAnswers !== undefined) {
    const missing = gtidBehind(replica.gtidIoPos, stateOf(primaryAnswers).gtidBinlogPos);
    log(
      `   ${primaryAnswers.name} (its primary) answers, read-only, at ${stateOf(primaryAnswers).gtidBinlogPos}: ${missing.transactions} transaction(s) ${target.name} lacks would be lost`,
    );
  } else {
    log(
      `   every write ${primaryName} committed after ${replica.gtidIoPos || 'that'} and sent to no replica is lost; how many cannot be known while it is down`,
    );
  }
  for (const other of others.filter((server) => server !== primaryAnswers)) {
    const theirs = stateOf(other).replica?.gtidIoPos ?? stateOf(other).gtidBinlogPos;
    const ahead = gtidBehind(replica.gtidIoPos, theirs).transactions;
    log(
      ahead > 0
        ? `   WARNING ${other.name} received ${ahead} transaction(s) more than ${target.name} (${theirs}): promote ${other.name} instead, or those are lost and ${other.name} cannot follow`
        : `   ${other.name} received ${theirs || '(nothing)'}: nothing more than ${target.name}`,
    );
  }
  for (const server of unreachable)
    log(`   ${server.name} did not answer: its position is unknown`);
}
