import { Command, CommanderError, Option } from 'commander';
import { ConfigError, describeDatabase, loadConfig } from '../config/config.js';
import type { RawEnv } from '../config/env.js';
import { createLogger } from '../create-logger.js';
import { AdminOperationError, type AdminFailureKind } from '../db/admin-topology.js';
import { migrateToLatest } from '../db/migrate-to-latest.js';
import { openDatabase } from '../db/open-database.js';
import { countUsers } from '../db/users-repository.js';
import { AppError } from '../errors.js';
import {
  IMPORT_FORMATS,
  checkImportFile,
  fileImportSource,
  formatOfFileName,
  type ImportFormat,
} from '../importer/import-source.js';
import { IMPORT_MODES, importUsers, type ImportMode } from '../importer/import-users.js';
import { startServer } from '../server.js';
import { registerBackupCommands } from './backup-commands.js';
import { registerDbCommands } from './db-commands.js';
import { CREATE_HELP, createOption, NO_CREATE_OPTION, withDatabase } from './with-database.js';
import { runMonitorCommand, type MonitorCommandOptions } from './monitor-command.js';

/**
 * Exit codes: 0 ok, 1 runtime failure (database, I/O, bad configuration; a switchover or
 * promotion that failed past its point of no return), 2 usage or bad input, 3 a precondition
 * of `db switchover`/`db promote` failed and nothing changed, 4 a switchover rolled back.
 */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_BAD_INPUT = 2;
export const EXIT_PRECONDITION = 3;
export const EXIT_ROLLED_BACK = 4;

const ADMIN_EXIT_CODES: Record<AdminFailureKind, number> = {
  'bad-input': EXIT_BAD_INPUT,
  precondition: EXIT_PRECONDITION,
  'rolled-back': EXIT_ROLLED_BACK,
  incomplete: EXIT_FAILURE,
};

export interface CliIo {
  env: RawEnv;
  stdout: (line: string) => void;
  stderr: (line: string) => void;
  /** Whether stdout is a terminal (pretty logs in development). */
  stdoutIsTty?: boolean;
  /** Resolves when the process is asked to stop (SIGTERM/SIGINT). */
  stopSignal: () => Promise<string>;
  /** Asks a yes/no question on the terminal; undefined when there is no terminal to ask on. */
  confirm?: (question: string) => Promise<boolean>;
}

interface ImportOptions {
  mode: ImportMode;
  format?: ImportFormat;
  create?: true;
}

/**
 * Runs one CLI command and returns its exit code; never exits the process itself. Every
 * failure is one human line on stderr (bad rows: one more line each).
 */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  let exitCode = EXIT_OK;
  const program = new Command('users-api')
    .description('Users directory service: HTTP API, imports and database maintenance.')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => io.stdout(text.trimEnd()),
      writeErr: (text) => io.stderr(text.trimEnd()),
    })
    .showHelpAfterError('(run with --help for usage)');

  program
    .command('serve')
    .description('Run the HTTP server (configured by environment variables) until SIGTERM/SIGINT.')
    .action(async () => {
      const config = loadConfig(io.env);
      const logger = createLogger(config, { stdoutIsTty: io.stdoutIsTty ?? false });
      const server = await startServer(config, logger);
      logger.info({ url: server.url }, 'listening');
      const signal = await io.stopSignal();
      logger.info({ signal }, 'shutting down');
      await server.shutdown();
      logger.info('stopped');
    });

  program
    .command('import')
    .description('Import users from a CSV, JSON or NDJSON file, all or nothing.')
    .argument('<file>', 'file to import (.csv, .json, .ndjson/.jsonl)')
    .addOption(
      new Option('--mode <mode>', 'if-empty: only into an empty table; append; replace')
        .choices(IMPORT_MODES)
        .default('if-empty'),
    )
    .addOption(
      new Option('--format <format>', 'file format (default: from the extension)').choices(
        IMPORT_FORMATS,
      ),
    )
    .option('--create', CREATE_HELP)
    .action(async (file: string, options: ImportOptions) => {
      const format = options.format ?? formatOfFileName(file);
      if (format === undefined) {
        throw new CommanderError(
          EXIT_BAD_INPUT,
          'users-api.format',
          `cannot tell the format of ${file} from its extension; pass --format csv|json|ndjson`,
        );
      }
      await checkImportFile(file);
      const config = loadConfig(io.env);
      const target = describeDatabase(config.database);
      await withDatabase(config, createOption(options), async (db) => {
        const result = await importUsers(db, fileImportSource(file, format), options.mode);
        io.stdout(
          result.status === 'imported'
            ? `imported ${result.rows} users into ${target} (mode ${options.mode})`
            : `skipped: the users table in ${target} is not empty (${result.rows} users); use --mode append or --mode replace`,
        );
      });
    });

  program
    .command('migrate')
    .description('Bring the database schema up to date (safe to run any number of times).')
    .action(async () => {
      const config = loadConfig(io.env);
      const target = describeDatabase(config.database);
      const db = openDatabase(config.database, { create: true });
      try {
        const applied = await migrateToLatest(db);
        io.stdout(
          applied.length > 0
            ? `applied ${applied.join(', ')} to ${target}`
            : `the schema of ${target} is up to date`,
        );
      } finally {
        await db.close();
      }
    });

  program
    .command('count')
    .description('Print the number of users in the database.')
    .action(async () => {
      await withDatabase(loadConfig(io.env), NO_CREATE_OPTION, async (db) => {
        io.stdout(String(await db.read(countUsers)));
      });
    });

  registerBackupCommands(program, io);
  registerDbCommands(program, io);

  program
    .command('monitor')
    .description(
      'Check URLs on an interval and POST an alert to a webhook when one goes down or comes back (a self-hosted uptime check). Runs until SIGINT/SIGTERM, then prints a summary.',
    )
    .option(
      '--url <url>',
      'URL to check; repeat for more',
      (url, urls: string[]) => [...urls, url],
      [],
    )
    .option('--interval <duration>', 'time between checks (500ms, 30s, 5m)', '30s')
    .option('--timeout <duration>', 'a check slower than this fails', '5s')
    .option('--expect <text>', 'the body must contain this text (e.g. "all good")')
    .option('--max-latency <duration>', 'a 2xx answer slower than this fails (default: no limit)')
    .option('--down-after <checks>', 'consecutive failures before a URL counts as down', '2')
    .option('--webhook <url>', 'POST a JSON alert here on every change of state')
    .option('--webhook-timeout <duration>', 'limit for each webhook attempt', '5s')
    .option('--webhook-retries <count>', 'attempts after the first failed one', '3')
    .option('--state <file>', 'keep state and history in this JSON file across restarts')
    .option('--port <port>', 'serve probe_success/probe_duration_seconds at /metrics (0: any)')
    .option('--host <address>', 'address for --port', '127.0.0.1')
    .action(async (options: MonitorCommandOptions) => {
      await runMonitorCommand(options, io);
    });

  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (error) {
    exitCode = reportError(error, io);
  }
  return exitCode;
}

function reportError(error: unknown, io: CliIo): number {
  if (error instanceof CommanderError) {
    // Help and version are "errors" to commander; they already printed what was asked.
    if (error.exitCode === 0) return EXIT_OK;
    if (error.code.startsWith('users-api.')) io.stderr(`users-api: ${error.message}`);
    return EXIT_BAD_INPUT;
  }
  if (error instanceof AdminOperationError) {
    io.stderr(`users-api: ${error.message}`);
    return ADMIN_EXIT_CODES[error.kind];
  }
  if (error instanceof ConfigError) {
    io.stderr(`users-api: configuration error: ${error.message}`);
    return EXIT_FAILURE;
  }
  if (error instanceof AppError) {
    io.stderr(`users-api: ${error.message}`);
    for (const line of error.errors ?? []) io.stderr(`  ${line}`);
    return error.status < 500 ? EXIT_BAD_INPUT : EXIT_FAILURE;
  }
  const message = error instanceof Error ? error.message : String(error);
  const cause =
    error instanceof Error && error.cause instanceof Error ? `: ${error.cause.message}` : '';
  io.stderr(`users-api: failed: ${message}${cause}`);
  return EXIT_FAILURE;
}
