import { CommanderError, type Command } from 'commander';
import { describeDatabase, loadConfig } from '../config/config.js';
import { createLogger } from '../create-logger.js';
import { readBackup, type BackupSummary } from '../backup/read-backup.js';
import { restoreBackup } from '../backup/restore-backup.js';
import { runBackupSchedule } from '../backup/run-backup-schedule.js';
import { takeBackup } from '../backup/take-backup.js';
import { parseDuration } from '../monitor/parse-duration.js';
import type { CliIo } from './run-cli.js';
import { CREATE_HELP, createOption, NO_CREATE_OPTION, withDatabase } from './with-database.js';

/** Exit code for bad usage or a bad file (commander errors end there too). */
const EXIT_BAD_INPUT = 2;

/**
 * A FILE named on the command line may be a symbolic link (e.g. latest.ndjson.gz): the operator
 * chose the path and could name the target as well. A FIFO or a device is still refused.
 */
const OPERATOR_PATH = { followSymlinks: true } as const;

interface BackupOptions {
  out?: string;
  every?: string;
  keep?: string;
}

function usage(message: string): CommanderError {
  return new CommanderError(EXIT_BAD_INPUT, 'users-api.usage', message);
}

function describe(summary: BackupSummary): string {
  const { manifest } = summary;
  return (
    `${summary.rows} users, taken ${manifest.createdAt} from ${manifest.sourceDialect} ` +
    `(${manifest.source}) on ${manifest.serverName}, format ${manifest.formatVersion}, ` +
    `schema ${manifest.schemaVersion}, sha256 ${summary.sha256}`
  );
}

/** `backup`, `verify` and `restore`: see docs/operations.md, "Backups and restore". */
export function registerBackupCommands(program: Command, io: CliIo): void {
  program
    .command('backup')
    .description(
      'Write a verified snapshot of the users table to BACKUP_DIR (or --out). With --every, run as a scheduler until SIGTERM/SIGINT.',
    )
    .option('--out <dir>', 'folder for the backup file (default: BACKUP_DIR)')
    .option('--every <duration>', 'take a backup now and then on this interval (e.g. 6h, 30m)')
    .option('--keep <count>', 'after each backup, delete all but this many newest backups')
    .action(async (options: BackupOptions) => {
      const everyMs = options.every === undefined ? undefined : parseDuration(options.every);
      if (everyMs !== undefined && everyMs < 1000) throw usage('--every must be at least 1s');
      if (options.every !== undefined && everyMs === undefined) {
        throw usage(`--every ${options.every} is not a duration (e.g. 30s, 15m, 6h)`);
      }
      const keep = options.keep === undefined ? undefined : Number(options.keep);
      if (keep !== undefined && !(Number.isSafeInteger(keep) && keep >= 1)) {
        throw usage(`--keep ${options.keep} must be a whole number of backups, at least 1`);
      }
      const config = loadConfig(io.env);
      const dir = options.out ?? config.backupDir;
      await withDatabase(config, NO_CREATE_OPTION, async (db) => {
        const run = () => takeBackup(db, { dir, serverName: config.serverName, keep });
        if (everyMs === undefined) {
          const backup = await run();
          io.stdout(`backup written: ${backup.path} (${describe(backup)})`);
          if (backup.deleted.length > 0) io.stdout(`deleted: ${backup.deleted.join(', ')}`);
          return;
        }
        const logger = createLogger(config, { stdoutIsTty: io.stdoutIsTty ?? false });
        logger.info({ dir, everyMs, keep }, 'backup scheduler started');
        const { runs, failures } = await runBackupSchedule({
          everyMs,
          run,
          logger,
          stopped: io.stopSignal(),
        });
        logger.info({ runs, failures }, 'backup scheduler stopped');
      });
    });

  program
    .command('verify')
    .description(
      'Check a backup file: manifest, every row (by the import rules), row count and SHA-256.',
    )
    .argument('<file>', 'backup file (.ndjson.gz)')
    .action(async (file: string) => {
      const summary = await readBackup(file, OPERATOR_PATH);
      io.stdout(`ok: ${file}: ${describe(summary)}`);
    });

  program
    .command('restore')
    .description(
      'Replace every user with a backup: verified first, loaded into a staging table, swapped in atomically; the old table is kept as users_prev.',
    )
    .argument('<file>', 'backup file (.ndjson.gz)')
    .option('--yes', 'replace the users without asking')
    .option('--create', CREATE_HELP)
    .action(async (file: string, options: { yes?: boolean; create?: true }) => {
      const config = loadConfig(io.env);
      const target = describeDatabase(config.database);
      if (options.yes !== true) {
        if (io.confirm === undefined) {
          throw usage(
            `restore replaces every user in ${target}: pass --yes to confirm (there is no terminal to ask on)`,
          );
        }
        const summary = await readBackup(file, OPERATOR_PATH);
        const confirmed = await io.confirm(
          `Replace every user in ${target} with the ${summary.rows} users of ${file}? [y/N] `,
        );
        if (!confirmed) throw usage('restore cancelled; nothing was changed');
      }
      await withDatabase(config, createOption(options), async (db) => {
        const summary = await restoreBackup(db, file, OPERATOR_PATH);
        io.stdout(
          `restored ${summary.rows} users into ${target} from ${file} (${describe(summary)}); the previous table is kept as users_prev until the next restore`,
        );
      });
    });
}
