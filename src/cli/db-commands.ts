import { readFile } from 'node:fs/promises';
import { CommanderError, type Command } from 'commander';
import { loadConfig, type MysqlConnection } from '../config/config.js';
import { AdminOperationError, configuredServers } from '../db/admin-topology.js';
import { openAdminSession, type AdminAccount } from '../db/dialects/mysql/switchover-sql.js';
import { promoteReplica } from '../db/promote-replica.js';
import { switchover } from '../db/switchover.js';
import { parseDuration } from '../monitor/parse-duration.js';
import type { CliIo } from './run-cli.js';

const EXIT_BAD_INPUT = 2;

interface AdminOptions {
  adminUrl?: string;
  adminUrlFile?: string;
  timeout: string;
}

interface SwitchoverCommandOptions extends AdminOptions {
  to: string;
  replicationUser?: string;
  replicationPasswordFile?: string;
  maxLag: string;
}

interface PromoteCommandOptions extends AdminOptions {
  yes?: true;
}

function usage(message: string): CommanderError {
  return new CommanderError(EXIT_BAD_INPUT, 'users-api.usage', message);
}

/** `--timeout`/`--max-lag` as seconds (fractions allowed: MASTER_GTID_WAIT takes them). */
function seconds(option: string, text: string): number {
  const ms = parseDuration(text);
  if (ms === undefined || ms < 100 || ms > 3_600_000) {
    throw usage(`${option} ${text} must be a duration from 100ms to 1h (e.g. 500ms, 10s, 2m)`);
  }
  return ms / 1000;
}

async function readSecret(option: string, path: string): Promise<string> {
  try {
    return (await readFile(path, 'utf8')).replace(/\r?\n$/, '');
  } catch (error) {
    throw usage(`${option} ${path}: ${(error as { code?: string }).code ?? String(error)}`);
  }
}

/**
 * The admin account from `--admin-url mysql://USER:PASSWORD@…` or a file holding that URL.
 * Only the user and password are used: the servers are the configured ones.
 */
async function adminAccount(options: AdminOptions): Promise<AdminAccount> {
  if ((options.adminUrl === undefined) === (options.adminUrlFile === undefined)) {
    throw usage('give the admin account as --admin-url URL or --admin-url-file PATH (one of them)');
  }
  const text =
    options.adminUrl ?? (await readSecret('--admin-url-file', options.adminUrlFile!)).trim();
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw usage('the admin URL is not a URL (mysql://USER:PASSWORD@HOST/)');
  }
  if (url.protocol !== 'mysql:' || url.username === '') {
    throw usage('the admin URL must be mysql://USER:PASSWORD@HOST/ (user required)');
  }
  return { user: decodeURIComponent(url.username), password: decodeURIComponent(url.password) };
}

function mysqlTopology(io: CliIo): MysqlConnection {
  const config = loadConfig(io.env);
  if (config.database.dialect !== 'mysql') {
    throw usage(
      'db switchover and db promote need DATABASE_URL=mysql://… (and DATABASE_REPLICA_URLS)',
    );
  }
  return config.database;
}

function opener(connection: MysqlConnection, timeoutSeconds: number) {
  // Each statement is bounded; the GTID wait is the longest one, up to --timeout.
  const queryTimeoutMs =
    Math.ceil(timeoutSeconds * 1000) + Math.max(10_000, connection.queryTimeoutMs);
  return (server: { host: string; port: number }, account: AdminAccount) =>
    openAdminSession(server, account, {
      connectTimeoutMs: connection.connectTimeoutMs,
      queryTimeoutMs,
    });
}

const ADMIN_URL_HELP =
  'admin account, mysql://USER:PASSWORD@HOST/ (only the credentials are used; see docs/operations.md for its privileges)';

/** `db switchover` and `db promote`: see docs/operations.md, "Promoting a replica". */
export function registerDbCommands(program: Command, io: CliIo): void {
  const db = program
    .command('db')
    .description('MariaDB primary/replica maintenance: switchover, promote.');

  db.command('switchover')
    .description(
      'Planned change of primary: the old primary read-only, the target catches up, becomes writable, and every other server replicates from it. Rolls back if the target does not catch up within --timeout.',
    )
    .requiredOption('--to <host:port>', 'the replica to make the primary (a configured server)')
    .option('--admin-url <url>', ADMIN_URL_HELP)
    .option('--admin-url-file <path>', 'file holding the admin URL')
    .option(
      '--replication-password-file <path>',
      'password of the replication account, for the old primary to replicate from the new one',
    )
    .option(
      '--replication-user <user>',
      'replication account (default: the one the target replicates with)',
    )
    .option('--timeout <duration>', 'longest writes stay paused waiting for the target', '10s')
    .option('--max-lag <duration>', 'refuse a target further behind than this', '10s')
    .action(async (options: SwitchoverCommandOptions) => {
      const timeoutSeconds = seconds('--timeout', options.timeout);
      const maxLagSeconds = seconds('--max-lag', options.maxLag);
      const admin = await adminAccount(options);
      if (options.replicationPasswordFile === undefined) {
        throw usage(
          '--replication-password-file is required: the old primary replicates from the new one with that account',
        );
      }
      const password = await readSecret(
        '--replication-password-file',
        options.replicationPasswordFile,
      );
      const connection = mysqlTopology(io);
      const result = await switchover({
        servers: configuredServers(connection),
        to: options.to,
        admin,
        replication: { user: options.replicationUser, password },
        timeoutSeconds,
        maxLagSeconds,
        open: opener(connection, timeoutSeconds),
        log: io.stdout,
      });
      io.stdout(
        `switched over from ${result.from} to ${result.to} at ${result.position} in ${result.durationMs} ms; writes paused ${result.writesPausedMs} ms`,
      );
      const failed = result.followers.filter((follower) => !follower.ok);
      if (failed.length > 0) {
        throw new AdminOperationError(
          'incomplete',
          `${result.to} is the primary, but ${failed.map((follower) => `${follower.name} ${follower.detail}`).join('; ')}`,
        );
      }
    });

  db.command('promote')
    .description(
      'Failover when the primary is gone: states the data-loss window, then (with --yes) makes HOST writable and points the other replicas at it.',
    )
    .argument('<host:port>', 'the replica to make the primary (a configured server)')
    .option('--admin-url <url>', ADMIN_URL_HELP)
    .option('--admin-url-file <path>', 'file holding the admin URL')
    .option('--yes', 'act: without it the data-loss window is printed and nothing changes')
    .option(
      '--timeout <duration>',
      'longest wait for HOST to apply what it already received',
      '30s',
    )
    .action(async (host: string, options: PromoteCommandOptions) => {
      const timeoutSeconds = seconds('--timeout', options.timeout);
      const admin = await adminAccount(options);
      const connection = mysqlTopology(io);
      const result = await promoteReplica({
        servers: configuredServers(connection),
        host,
        admin,
        yes: options.yes === true,
        timeoutSeconds,
        open: opener(connection, timeoutSeconds),
        log: io.stdout,
      });
      io.stdout(
        `promoted ${result.promoted} in ${result.durationMs} ms; it takes writes from ${result.position}`,
      );
      const failed = result.followers.filter((follower) => !follower.ok);
      if (failed.length > 0) {
        throw new AdminOperationError(
          'incomplete',
          `${result.promoted} is the primary, but ${failed.map((follower) => `${follower.name} ${follower.detail}`).join('; ')}`,
        );
      }
    });
}
