import { sql } from 'kysely';
import type { DatabaseExecutor } from '../../database.js';
import { describeError, type TopologyLogger } from '../../topology-monitor.js';

/** Held by the one instance that writes the heartbeat (named locks are per server). */
export const HEARTBEAT_LOCK = 'users-api.heartbeat';

export interface HeartbeatWriterOptions {
  /**
   * A pool of its own on the writer (the primary, or a promoted replica), asked before every
   * session: the lock lives as long as the session holding it. Undefined: no server may be
   * written now (split brain, every one read-only); nothing is written.
   */
  executor: () => DatabaseExecutor | undefined;
  intervalMs: number;
  /** Who writes (host and pid), so an operator can find the writer from the row. */
  writer: string;
  /**
   * A heartbeat older than this while another session holds the lock means that session's
   * instance is frozen or cut off with its TCP connection still open: it is killed (its own
   * account may kill its sessions) and the lock taken over.
   */
  takeOverAfterMs: number;
  logger?: TopologyLogger | undefined;
}

export interface HeartbeatWriter {
  /** Whether this instance holds the heartbeat lock now. */
  writing(): boolean;
  stop(): Promise<void>;
}

/**
 * Writes the replication heartbeat (migration 0005) on the primary every `intervalMs`, while this
 * instance holds HEARTBEAT_LOCK; every other instance tries for the lock each interval, so one
 * takes over within a second or two when the writer stops, dies or loses its connection (the
 * server frees a dead session's locks). The row carries the primary's own clock (microseconds):
 * lag is then measured against the primary's clock, never against an instance's or a replica's.
 */
export function startHeartbeatWriter(options: HeartbeatWriterOptions): HeartbeatWriter {
  const { executor, intervalMs, writer, logger } = options;
  let stopped = false;
  let holding = false;
  let lastProblem: string | undefined;
  let wake: (() => void) | undefined;
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  const report = (problem: string | undefined) => {
    if (problem === lastProblem) return;
    if (problem === undefined) logger?.info({ writer }, 'heartbeat: this instance writes it');
    else logger?.warn({ reason: problem }, 'heartbeat: this instance cannot write it');
    lastProblem = problem;
  };

  /** One session: take the lock when free (or stale), write while held. Ends when it fails. */
  const session = (connection: DatabaseExecutor, target: DatabaseExecutor) =>
    (async () => {
      // A new writer ends the session: the heartbeat follows the writes.
      while (!stopped && executor() === target) {
        if (!holding) {
          // A session that kept the lock through a failed write (back in the pool) has it
          // already: GET_LOCK again would nest it, and one RELEASE_LOCK would then not free it.
          const { rows } = await sql<{ locked: number | string | null }>`
            SELECT IF(IS_USED_LOCK(${HEARTBEAT_LOCK}) = CONNECTION_ID(), 1,
              GET_LOCK(${HEARTBEAT_LOCK}, 0)) AS locked`.execute(connection);
          holding = Number(rows[0]?.locked) === 1;
          if (!holding) await takeOverStaleWriter(connection);
        }
        if (holding) {
          await sql`
            INSERT INTO replication_heartbeat (id, beat_us, server_id, writer)
            VALUES (1, CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED), @@server_id, ${writer})
            ON DUPLICATE KEY UPDATE beat_us = VALUES(beat_us), server_id = VALUES(server_id),
              writer = VALUES(writer)`.execute(connection);
          report(undefined);
        }
        if (!stopped) await pause(intervalMs);
      }
      if (holding) await sql`SELECT RELEASE_LOCK(${HEARTBEAT_LOCK})`.execute(connection);
      holding = false;
    })();

  const takeOverStaleWriter = async (connection: DatabaseExecutor) => {
    const { rows } = await sql<{ holder: number | string | null; age_us: number | string | null }>`
      SELECT IS_USED_LOCK(${HEARTBEAT_LOCK}) AS holder,
        (SELECT CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED) - beat_us
           FROM replication_heartbeat WHERE id = 1) AS age_us`.execute(connection);
    const holder = rows[0]?.holder;
    const ageMs = Number(rows[0]?.age_us) / 1000;
    if (holder === null || holder === undefined || !(ageMs > options.takeOverAfterMs)) return;
    logger?.warn(
      { session: Number(holder), heartbeatAgeMs: Math.round(ageMs) },
      'heartbeat: the writer has not written for too long; ending its session to take over',
    );
    // Best effort: it may have ended by itself meanwhile (ER_NO_SUCH_THREAD).
    await sql`KILL CONNECTION ${sql.raw(String(Number(holder)))}`
      .execute(connection)
      .catch(() => undefined);
  };

  const running = (async () => {
    while (!stopped) {
      const target = executor();
      if (target === undefined) {
        holding = false;
        report('no writable database server (split brain, or every one read-only)');
        await pause(intervalMs);
        continue;
      }
      try {
        await target.connection().execute((connection) => session(connection, target));
      } catch (error) {
        // The session is gone (and the server freed its lock), or the table is not there yet:
        // try again next interval on a new connection.
        holding = false;
        report(describeError(error));
        if (!stopped) await pause(intervalMs);
      }
    }
  })();

  return {
    writing: () => holding,
    async stop() {
      stopped = true;
      wake?.();
      await running;
      holding = false;
    },
  };
}
