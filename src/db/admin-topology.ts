import type { MysqlConnection } from '../config/config.js';
import {
  missingAdminPrivileges,
  readReplicationState,
  type AdminAccount,
  type AdminSession,
  type ServerReplicationState,
} from './dialects/mysql/switchover-sql.js';
import { describeError } from './topology-monitor.js';

/**
 * Why a switchover or promotion stopped, which decides the CLI's exit code:
 * `bad-input` (2): the command cannot mean anything here (unknown host); nothing was touched.
 * `precondition` (3): the servers are not in a state to do it; nothing was changed.
 * `rolled-back` (4): the target did not catch up in time; the old primary takes writes again.
 * `incomplete` (1): it failed past the point of no return; the message says what is left.
 */
export type AdminFailureKind = 'bad-input' | 'precondition' | 'rolled-back' | 'incomplete';

export class AdminOperationError extends Error {
  override name = 'AdminOperationError';
  constructor(
    readonly kind: AdminFailureKind,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
  }
}

/** A configured server (DATABASE_URL or one of DATABASE_REPLICA_URLS), named host:port. */
export interface ConfiguredServer {
  name: string;
  host: string;
  port: number;
}

/** A configured server with an admin session on it, or why there is none. */
export interface AdminServer extends ConfiguredServer {
  session: AdminSession | undefined;
  state: ServerReplicationState | undefined;
  /** Why it could not be reached or read (undefined when `state` is set). */
  failure: string | undefined;
}

export type OpenAdminSession = (
  server: ConfiguredServer,
  account: AdminAccount,
) => Promise<AdminSession>;

/** What `db switchover` and `db promote` both take: the servers and how to reach them as admin. */
export interface AdminCommandOptions {
  /** Every configured server, the configured primary first. */
  servers: readonly ConfiguredServer[];
  admin: AdminAccount;
  open: OpenAdminSession;
  /** One line per step. */
  log: (line: string) => void;
  now?: () => number;
}

/**
 * Names the configured server `host` (bad-input when unknown, before any connection), opens an
 * admin session on every server (privileges checked, replication state read), runs `act` with
 * them, and closes the sessions however it ends.
 */
export async function withAdminServers<T>(
  options: AdminCommandOptions,
  host: string,
  act: (servers: AdminServer[], wanted: ConfiguredServer) => Promise<T>,
): Promise<T> {
  const wanted = findServer(options.servers, host);
  options.log(`checking ${options.servers.length} servers as ${options.admin.user}`);
  const servers = await openAdminServers(options.servers, options.admin, options.open);
  try {
    return await act(servers, wanted);
  } finally {
    await closeAdminServers(servers);
  }
}

/** Every configured server, primary first, each named host:port (as the app names them). */
export function configuredServers(connection: MysqlConnection): ConfiguredServer[] {
  return [connection.primary, ...connection.replicas].map(({ name, host, port }) => ({
    name,
    host,
    port,
  }));
}

/**
 * The configured server `host` names: `host:port`, or `host` alone for port 3306. Unknown:
 * a bad-input failure listing the configured names.
 */
export function findServer(servers: readonly ConfiguredServer[], host: string): ConfiguredServer {
  const name = /:\d+$/.test(host) ? host : `${host}:3306`;
  const found = servers.find((server) => server.name === name);
  if (found === undefined) {
    throw new AdminOperationError(
      'bad-input',
      `${host} is not a configured database server (configured: ${servers.map((server) => server.name).join(', ')})`,
    );
  }
  return found;
}

/** Opens an admin session on every server at once and reads its replication state. */
export async function openAdminServers(
  servers: readonly ConfiguredServer[],
  account: AdminAccount,
  open: OpenAdminSession,
): Promise<AdminServer[]> {
  return Promise.all(
    servers.map(async (server): Promise<AdminServer> => {
      let session: AdminSession | undefined;
      try {
        session = await open(server, account);
        const missing = await missingAdminPrivileges(session);
        if (missing.length > 0) {
          return {
            ...server,
            session,
            state: undefined,
            failure: `the admin account lacks ${missing.join(', ')} (GRANT ${missing.join(', ')} ON *.* TO it)`,
          };
        }
        const state = await readReplicationState(session);
        return { ...server, session, state, failure: undefined };
      } catch (error) {
        return { ...server, session, state: undefined, failure: describeAdminFailure(error) };
      }
    }),
  );
}

export async function closeAdminServers(servers: readonly AdminServer[]): Promise<void> {
  await Promise.all(servers.map(async (server) => server.session?.close()));
}

/** A driver error in words an operator can act on, without credentials. */
export function describeAdminFailure(error: unknown): string {
  const code = (error as { code?: unknown } | undefined)?.code;
  const message = error instanceof Error ? error.message.split('\n')[0]!.slice(0, 200) : '';
  if (code === 'ER_ACCESS_DENIED_ERROR') return `access denied for the admin account (${message})`;
  if (code === 'ER_SPECIFIC_ACCESS_DENIED_ERROR' || code === 'ER_SPECIFIC_ACCESS_DENIED') {
    return `the admin account lacks a privilege: ${message}`;
  }
  if (typeof code === 'string' && code.startsWith('ER_')) return `${code}: ${message}`;
  return `unreachable: ${describeError(error)}`;
}

/** The server's state; only called on servers `openAdminServers` could read. */
export function stateOf(server: AdminServer): ServerReplicationState {
  if (server.state === undefined) throw new Error(`${server.name}: not read`);
  return server.state;
}

export function sessionOf(server: AdminServer): AdminSession {
  if (server.session === undefined) throw new Error(`${server.name}: no session`);
  return server.session;
}
