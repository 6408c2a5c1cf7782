import {
  AdminOperationError,
  describeAdminFailure,
  sessionOf,
  stateOf,
  type AdminServer,
  type ConfiguredServer,
  type AdminCommandOptions,
  withAdminServers,
} from './admin-topology.js';
import {
  adoptBinlogAsSlavePosition,
  changePrimary,
  readBinlogPosition,
  readReplicationState,
  setReadOnly,
  startReplication,
  stopAndForgetPrimary,
  waitForGtid,
} from './dialects/mysql/switchover-sql.js';

export interface SwitchoverOptions extends AdminCommandOptions {
  /** The replica to promote: host:port of a configured server. */
  to: string;
  /** The account the old primary replicates from the new one with; `user` defaults to the
   * one the target itself replicates with. */
  replication: { user: string | undefined; password: string };
  /** Longest writes stay paused waiting for the target to catch up before rolling back. */
  timeoutSeconds: number;
  /** A target further behind than this (Seconds_Behind_Master) is refused before any pause. */
  maxLagSeconds: number;
}

export interface FollowerResult {
  name: string;
  ok: boolean;
  detail: string;
}

export interface SwitchoverResult {
  from: string;
  to: string;
  /** The old primary's last GTID position, which the new primary had applied when it took over. */
  position: string;
  /** From the old primary's read_only=1 to the new one's read_only=0, as this command saw it. */
  writesPausedMs: number;
  durationMs: number;
  followers: FollowerResult[];
}

/** How long the servers repointed at the new primary get to show they replicate from it. */
const FOLLOW_CHECK_SECONDS = 10;

/**
 * A planned switchover to the replica `to`: checks it replicates from the primary and is
 * healthy, sets the old primary read-only (writes pause), waits up to `timeoutSeconds` for the
 * target to apply the old primary's last GTID, makes it the writable primary and points the
 * old primary and the other replicas at it (GTID, slave_pos). If the target does not catch up
 * in time the old primary is made writable again and nothing else has changed (`rolled-back`).
 */
export async function switchover(options: SwitchoverOptions): Promise<SwitchoverResult> {
  const now = options.now ?? Date.now;
  const { log } = options;
  const startedAt = now();
  return withAdminServers(options, options.to, async (servers, wanted) => {
    const plan = checkSwitchover(servers, wanted, options);
    const { primary, target } = plan;
    const primarySession = sessionOf(primary);
    const targetSession = sessionOf(target);
    const lockWaitSeconds = Math.max(1, Math.ceil(options.timeoutSeconds));

    log(`1. ${primary.name}: SET GLOBAL read_only=1 (writes pause)`);
    const pausedAt = now();
    let position: string;
    let replicationStopped = false;
    try {
      await setReadOnly(primarySession, true, lockWaitSeconds);
      position = await readBinlogPosition(primarySession);
      log(`2. ${primary.name}: last GTID position ${position}`);
      log(
        `3. ${target.name}: waiting up to ${options.timeoutSeconds}s for it to apply ${position}`,
      );
      if (!(await waitForGtid(targetSession, position, options.timeoutSeconds))) {
        throw new AdminOperationError(
          'rolled-back',
          `${target.name} did not apply ${position} within ${options.timeoutSeconds}s`,
        );
      }
      log(`4. ${target.name}: STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only=0`);
      replicationStopped = true;
      await stopAndForgetPrimary(targetSession);
    } catch (error) {
      throw await rollBack(primary, target, replicationStopped, lockWaitSeconds, log, error);
    }
    try {
      await setReadOnly(targetSession, false, lockWaitSeconds);
    } catch (error) {
      throw new AdminOperationError(
        'incomplete',
        `${target.name} no longer replicates but could not be made writable (${describeAdminFailure(error)}): every server is read-only, writes answer 503. Run SET GLOBAL read_only=0 on ${target.name} by hand`,
        { cause: error },
      );
    }
    const writesPausedMs = now() - pausedAt;
    log(`   writes resume on ${target.name} (paused ${writesPausedMs} ms here)`);

    const replicationUser = options.replication.user ?? plan.replicationUser;
    const followers: FollowerResult[] = [];
    log(`5. ${primary.name}: replicates from ${target.name} (MASTER_USE_GTID=slave_pos)`);
    followers.push(
      await repoint(primary, target, log, async (session) => {
        await adoptBinlogAsSlavePosition(session);
        await changePrimary(session, target, {
          user: replicationUser,
          password: options.replication.password,
        });
      }),
    );
    for (const other of plan.others) {
      log(`6. ${other.name}: replicates from ${target.name} (MASTER_USE_GTID=slave_pos)`);
      followers.push(
        await repoint(other, target, log, (session) => changePrimary(session, target)),
      );
    }
    const targetPosition = await readBinlogPosition(targetSession);
    for (const follower of followers.filter((each) => each.ok)) {
      const server = servers.find((each) => each.name === follower.name)!;
      Object.assign(follower, await checkFollower(server, target, targetPosition));
      log(`   ${follower.name}: ${follower.detail}`);
    }
    return {
      from: primary.name,
      to: target.name,
      position,
      writesPausedMs,
      durationMs: now() - startedAt,
      followers,
    };
  });
}

interface SwitchoverPlan {
  primary: AdminServer;
  target: AdminServer;
  /** The replicas of the primary besides the target: repointed at it. */
  others: AdminServer[];
  replicationUser: string;
}

/** Every check that can refuse the switchover before anything changes. */
function checkSwitchover(
  servers: readonly AdminServer[],
  wanted: ConfiguredServer,
  options: SwitchoverOptions,
): SwitchoverPlan {
  const unreachable = servers.filter((server) => server.state === undefined);
  if (unreachable.length > 0) {
    throw new AdminOperationError(
      'precondition',
      `cannot switch over: ${unreachable.map((server) => `${server.name} ${server.failure}`).join('; ')} (a planned switchover needs every configured server; with the primary gone use db promote)`,
    );
  }
  const notMariadb = servers.find((server) => stateOf(server).flavor !== 'mariadb');
  if (notMariadb !== undefined) {
    throw new AdminOperationError(
      'precondition',
      `${notMariadb.name} runs ${stateOf(notMariadb).version}: db switchover supports MariaDB only (MASTER_GTID_WAIT, MASTER_USE_GTID)`,
    );
  }
  const writable = servers.filter((server) => !stateOf(server).readOnly);
  if (writable.length !== 1) {
    throw new AdminOperationError(
      'precondition',
      writable.length === 0
        ? 'no server is writable: there is no primary to switch over from (db promote makes a replica the primary)'
        : `${writable.map((server) => server.name).join(' and ')} are all writable (split brain): make all but one read-only first`,
    );
  }
  const primary = writable[0]!;
  const target = servers.find((server) => server.name === wanted.name)!;
  if (target === primary) {
    throw new AdminOperationError('precondition', `${target.name} is already the primary`);
  }
  const replica = stateOf(target).replica;
  if (replica === undefined) {
    throw new AdminOperationError('precondition', `${target.name} is not a replica`);
  }
  if (replica.masterServerId !== stateOf(primary).serverId) {
    throw new AdminOperationError(
      'precondition',
      `${target.name} replicates from ${replica.masterHost}:${replica.masterPort}, not from the primary ${primary.name}`,
    );
  }
  if (replica.ioRunning !== 'Yes' || replica.sqlRunning !== 'Yes') {
    throw new AdminOperationError(
      'precondition',
      `${target.name} is not replicating (I/O thread ${replica.ioRunning}, SQL thread ${replica.sqlRunning}${replica.lastError === '' ? '' : `: ${replica.lastError}`})`,
    );
  }
  if (replica.usingGtid === 'No') {
    throw new AdminOperationError(
      'precondition',
      `${target.name} replicates by binlog file and position, not GTID (CHANGE MASTER TO MASTER_USE_GTID=slave_pos first)`,
    );
  }
  if (replica.lagSeconds === null || replica.lagSeconds > options.maxLagSeconds) {
    throw new AdminOperationError(
      'precondition',
      `${target.name} is ${replica.lagSeconds ?? 'an unknown number of'} seconds behind (over --max-lag ${options.maxLagSeconds}s): writes would stay paused while it catches up`,
    );
  }
  const targetState = stateOf(target);
  if (!targetState.logBin || !targetState.logSlaveUpdates) {
    throw new AdminOperationError(
      'precondition',
      `${target.name} has log_bin=${Number(targetState.logBin)}, log_slave_updates=${Number(targetState.logSlaveUpdates)}: the other servers could not replicate from it (both must be ON)`,
    );
  }
  const others = servers.filter(
    (server) =>
      server !== primary &&
      server !== target &&
      stateOf(server).replica?.masterServerId === stateOf(primary).serverId,
  );
  for (const server of servers) {
    if (server !== primary && server !== target && !others.includes(server)) {
      options.log(`   ${server.name}: not a replica of ${primary.name}; left as it is`);
    }
  }
  options.log(
    `   primary ${primary.name}; ${target.name} replicates from it, ${replica.lagSeconds}s behind; ` +
      `then ${[primary, ...others].map((server) => server.name).join(', ')} replicate from ${target.name}`,
  );
  return { primary, target, others, replicationUser: replica.masterUser };
}

/**
 * Undoes a pause the target could not end: the old primary writable, the target replicating.
 * Returns the error to throw: `rolled-back`, or `incomplete` when the undo failed too.
 */
async function rollBack(
  primary: AdminServer,
  target: AdminServer,
  replicationStopped: boolean,
  lockWaitSeconds: number,
  log: (line: string) => void,
  error: unknown,
): Promise<AdminOperationError> {
  const why = error instanceof AdminOperationError ? error.message : describeAdminFailure(error);
  log(`   rolling back: ${why}`);
  const problems: string[] = [];
  if (replicationStopped) {
    // Replication was stopped before RESET SLAVE ALL could run (or it failed): start it again.
    const state = await readReplicationState(sessionOf(target)).catch(() => undefined);
    if (state?.replica !== undefined) {
      await startReplication(sessionOf(target)).catch((startError: unknown) =>
        problems.push(`START SLAVE on ${target.name}: ${describeAdminFailure(startError)}`),
      );
    } else problems.push(`${target.name} lost its replication settings`);
  }
  try {
    await setReadOnly(sessionOf(primary), false, lockWaitSeconds);
    log(`   ${primary.name}: SET GLOBAL read_only=0 (writes resume there)`);
  } catch (undoError) {
    problems.push(`SET GLOBAL read_only=0 on ${primary.name}: ${describeAdminFailure(undoError)}`);
  }
  if (problems.length > 0) {
    return new AdminOperationError(
      'incomplete',
      `switchover failed (${why}) and the rollback too: ${problems.join('; ')}`,
      { cause: error },
    );
  }
  return new AdminOperationError(
    'rolled-back',
    `switchover rolled back: ${why}; ${primary.name} is the writable primary again, nothing else changed`,
    { cause: error },
  );
}

/** Points `server` at `target` with `change`; a failure is logged and returned, not thrown. */
export async function repoint(
  server: AdminServer,
  target: AdminServer,
  log: (line: string) => void,
  change: (session: NonNullable<AdminServer['session']>) => Promise<void>,
): Promise<FollowerResult> {
  try {
    await change(sessionOf(server));
    return { name: server.name, ok: true, detail: `replicating from ${target.name}` };
  } catch (error) {
    const detail = `could not be pointed at ${target.name}: ${describeAdminFailure(error)}`;
    log(`   ${server.name}: ${detail}`);
    return { name: server.name, ok: false, detail };
  }
}

/**
 * Whether a repointed server replicates from the new primary and has applied `targetPosition`:
 * polled for up to FOLLOW_CHECK_SECONDS, as its I/O thread takes a moment to connect.
 */
export async function checkFollower(
  server: AdminServer,
  target: ConfiguredServer,
  targetPosition: string,
): Promise<Pick<FollowerResult, 'ok' | 'detail'>> {
  const deadline = Date.now() + FOLLOW_CHECK_SECONDS * 1000;
  let detail = 'not checked';
  try {
    const session = sessionOf(server);
    // Bounded by the deadline and by a count (every round waits at least 200 ms).
    for (let round = 0; round < FOLLOW_CHECK_SECONDS * 5 + 1; round += 1) {
      const left = Math.max(0, (deadline - Date.now()) / 1000);
      const caughtUp = await waitForGtid(session, targetPosition, Math.min(left, 1));
      const replica = (await readReplicationState(session)).replica;
      if (replica === undefined) return { ok: false, detail: 'is no longer a replica' };
      if (replica.ioRunning === 'Yes' && replica.sqlRunning === 'Yes' && caughtUp) {
        return {
          ok: true,
          detail: `replicates from ${target.name}, has applied ${targetPosition}`,
        };
      }
      detail = `does not replicate from ${target.name} (I/O ${replica.ioRunning}, SQL ${replica.sqlRunning}${replica.lastError === '' ? '' : `: ${replica.lastError}`}${caughtUp ? '' : `; ${targetPosition} not applied`}) after ${FOLLOW_CHECK_SECONDS}s`;
      if (Date.now() >= deadline || (replica.sqlRunning === 'No' && replica.lastError !== ''))
        break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    return { ok: false, detail };
  } catch (error) {
    return { ok: false, detail: `could not be checked: ${describeAdminFailure(error)}` };
  }
}
