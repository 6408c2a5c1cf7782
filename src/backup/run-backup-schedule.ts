import type { TakenBackup } from './take-backup.js';

export interface BackupScheduleLogger {
  info(details: object, message: string): void;
  error(details: object, message: string): void;
}

export interface BackupScheduleOptions {
  /** Time from the start of one run to the start of the next. */
  everyMs: number;
  /** One backup run (write, verify, status, retention). */
  run: () => Promise<TakenBackup>;
  logger: BackupScheduleLogger;
  /** Resolves when the scheduler should stop; a run in progress finishes first. */
  stopped: Promise<unknown>;
  now?: () => number;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * Takes a backup now and then every `everyMs` until `stopped` resolves, logging one JSON line
 * per run. A failed run is logged and the schedule goes on (the next run may succeed); it
 * deletes nothing, so the newest good backup is kept. Returns how many runs failed.
 */
export async function runBackupSchedule(
  options: BackupScheduleOptions,
): Promise<{ runs: number; failures: number }> {
  const now = options.now ?? Date.now;
  let stop = false;
  let wake: (() => void) | undefined;
  void options.stopped.then(() => {
    stop = true;
    wake?.();
  });
  let runs = 0;
  let failures = 0;
  while (!stop) {
    const startedAt = now();
    runs += 1;
    try {
      const backup = await options.run();
      options.logger.info(
        {
          event: 'backup',
          result: 'ok',
          file: backup.file,
          rows: backup.rows,
          bytes: backup.bytes,
          sha256: backup.sha256,
          source: backup.manifest.source,
          durationMs: now() - startedAt,
          deleted: backup.deleted,
        },
        'backup finished',
      );
    } catch (error) {
      failures += 1;
      options.logger.error(
        {
          event: 'backup',
          result: 'failed',
          error: error instanceof Error ? error.message : String(error),
          durationMs: now() - startedAt,
        },
        'backup failed; older backups are kept',
      );
    }
    // In steps: setTimeout fires after 1 ms for anything over 2^31 - 1 ms (~24.8 days), which
    // would turn a monthly schedule into a loop of backups. Counted down, not read off the
    // clock: a clock stepped back must not delay the next backup.
    let waitMs = Math.max(0, options.everyMs - (now() - startedAt));
    while (!stop && waitMs > 0) {
      const step = Math.min(waitMs, MAX_TIMER_MS);
      waitMs -= step;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, step);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
    }
  }
  return { runs, failures };
}
