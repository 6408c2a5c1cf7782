import { createConnection } from 'mysql2/promise';

/** One admin session on one server: what `db switchover` and `db promote` run their SQL on. */
export interface AdminSession {
  /** Runs one statement (values escaped client-side: CHANGE MASTER takes no placeholders). */
  query(statement: string, values?: unknown[]): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}

export interface AdminAccount {
  user: string;
  password: string;
}

/**
 * Opens an admin session to host:port. Every statement is bounded by `queryTimeoutMs` (a
 * frozen server must not hold a switchover with writes paused).
 */
export async function openAdminSession(
  server: { host: string; port: number },
  account: AdminAccount,
  options: { connectTimeoutMs: number; queryTimeoutMs: number },
): Promise<AdminSession> {
  const connection = await createConnection({
    host: server.host,
    port: server.port,
    user: account.user,
    password: account.password,
    connectTimeout: options.connectTimeoutMs,
    supportBigNumbers: true,
    bigNumberStrings: true,
  });
  return {
    async query(statement, values = []) {
      const [rows] = await connection.query({
        sql: statement,
        values,
        timeout: options.queryTimeoutMs,
      });
      return Array.isArray(rows) ? (rows as Record<string, unknown>[]) : [];
    },
    async close() {
      // A session whose server died cannot say goodbye: destroy is the only way to free it.
      await connection.end().catch(() => connection.destroy());
    },
  };
}

/** What a switchover needs to know of one server, read in one round trip or two. */
export interface ServerReplicationState {
  flavor: 'mariadb' | 'mysql';
  version: string;
  serverId: number;
  readOnly: boolean;
  logBin: boolean;
  logSlaveUpdates: boolean;
  /** The GTID of the last transaction in its binary log, per domain. */
  gtidBinlogPos: string;
  /** The GTID of the last transaction it applied as a replica, per domain. */
  gtidSlavePos: string;
  /** undefined: not configured as a replica. */
  replica: ReplicaStatus | undefined;
}

export interface ReplicaStatus {
  masterHost: string;
  masterPort: number;
  masterUser: string;
  masterServerId: number;
  /** `Yes`, `No` or `Connecting`. */
  ioRunning: string;
  /** `Yes` or `No`. */
  sqlRunning: string;
  lagSeconds: number | null;
  usingGtid: string;
  /** The newest GTID its I/O thread received from the primary (applied or not yet). */
  gtidIoPos: string;
  lastError: string;
}

/** Reads the server's replication state (MariaDB; a MySQL server reports flavor `mysql`). */
export async function readReplicationState(session: AdminSession): Promise<ServerReplicationState> {
  const [variables] = await session.query(
    `SELECT VERSION() AS version, @@GLOBAL.server_id AS server_id,
       @@GLOBAL.read_only AS read_only, @@GLOBAL.log_bin AS log_bin,
       @@GLOBAL.log_slave_updates AS log_slave_updates`,
  );
  const version = textOf(variables?.version);
  const flavor = /mariadb/i.test(version) ? 'mariadb' : 'mysql';
  let gtidBinlogPos = '';
  let gtidSlavePos = '';
  if (flavor === 'mariadb') {
    const [gtid] = await session.query(
      'SELECT @@GLOBAL.gtid_binlog_pos AS binlog_pos, @@GLOBAL.gtid_slave_pos AS slave_pos',
    );
    gtidBinlogPos = textOf(gtid?.binlog_pos);
    gtidSlavePos = textOf(gtid?.slave_pos);
  }
  // MariaDB 10.11 accepts SHOW REPLICA STATUS but keeps the old column names.
  const [status] = await session.query('SHOW SLAVE STATUS');
  const text = (name: string) => textOf(status?.[name]);
  const lag = status?.Seconds_Behind_Master;
  return {
    flavor,
    version,
    serverId: Number(variables?.server_id),
    readOnly: Number(variables?.read_only) !== 0,
    logBin: Number(variables?.log_bin) !== 0,
    logSlaveUpdates: Number(variables?.log_slave_updates) !== 0,
    gtidBinlogPos,
    gtidSlavePos,
    replica:
      status === undefined
        ? undefined
        : {
            masterHost: text('Master_Host'),
            masterPort: Number(status.Master_Port),
            masterUser: text('Master_User'),
            masterServerId: Number(status.Master_Server_Id),
            ioRunning: text('Slave_IO_Running'),
            sqlRunning: text('Slave_SQL_Running'),
            lagSeconds: lag === null || lag === undefined ? null : Number(lag),
            usingGtid: text('Using_Gtid'),
            gtidIoPos: text('Gtid_IO_Pos'),
            lastError: text('Last_SQL_Error') || text('Last_IO_Error'),
          },
  };
}

/**
 * Makes the server refuse writes from every account without READ_ONLY ADMIN. `lockWaitSeconds`
 * bounds the wait for the global read lock SET GLOBAL read_only takes behind running statements.
 */
export async function setReadOnly(
  session: AdminSession,
  readOnly: boolean,
  lockWaitSeconds: number,
): Promise<void> {
  await session.query('SET SESSION lock_wait_timeout = ?', [Math.max(1, lockWaitSeconds)]);
  await session.query(`SET GLOBAL read_only = ${readOnly ? 1 : 0}`);
}

export async function readBinlogPosition(session: AdminSession): Promise<string> {
  const [row] = await session.query('SELECT @@GLOBAL.gtid_binlog_pos AS position');
  return textOf(row?.position);
}

/** Waits up to `seconds` for the replica to apply `position` (MASTER_GTID_WAIT); false on timeout. */
export async function waitForGtid(
  session: AdminSession,
  position: string,
  seconds: number,
): Promise<boolean> {
  if (position === '') return true;
  const [row] = await session.query('SELECT MASTER_GTID_WAIT(?, ?) AS result', [position, seconds]);
  return Number(row?.result) === 0;
}

export async function startReplication(session: AdminSession): Promise<void> {
  await session.query('START SLAVE');
}

/** Stops replication and forgets the primary: the server is a replica of nothing. */
export async function stopAndForgetPrimary(session: AdminSession): Promise<void> {
  await session.query('STOP SLAVE');
  await session.query('RESET SLAVE ALL');
}

/**
 * Points a replica at a new primary, resuming from the GTIDs it has applied (slave_pos); the
 * account it connects with is kept unless `account` is given (a server that was no replica).
 */
export async function changePrimary(
  session: AdminSession,
  primary: { host: string; port: number },
  account?: AdminAccount,
): Promise<void> {
  await session.query('STOP SLAVE');
  const credentials = account === undefined ? '' : ', MASTER_USER = ?, MASTER_PASSWORD = ?';
  await session.query(
    `CHANGE MASTER TO MASTER_HOST = ?, MASTER_PORT = ?${credentials}, ` +
      'MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1',
    [
      primary.host,
      primary.port,
      ...(account === undefined ? [] : [account.user, account.password]),
    ],
  );
  await session.query('START SLAVE');
}

/**
 * An old primary's own binary log is where it stands: its replica position becomes that, so
 * MASTER_USE_GTID=slave_pos resumes after its last write (its slave_pos is empty, or stale
 * from an earlier time as a replica). Replication must be stopped.
 */
export async function adoptBinlogAsSlavePosition(session: AdminSession): Promise<void> {
  await session.query('STOP SLAVE');
  await session.query('SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_binlog_pos');
}

/**
 * What `db switchover` and `db promote` run needs on every server (MariaDB 10.11; SUPER no
 * longer implies these): SET GLOBAL read_only; STOP/START SLAVE, CHANGE MASTER and
 * SET GLOBAL gtid_slave_pos; RESET SLAVE ALL; SHOW SLAVE STATUS.
 * @see https://mariadb.com/kb/en/grant/#global-privileges
 */
export const ADMIN_PRIVILEGES = [
  'READ_ONLY ADMIN',
  'REPLICATION SLAVE ADMIN',
  'RELOAD',
  'SLAVE MONITOR',
] as const;

/**
 * The privileges of ADMIN_PRIVILEGES the session's account lacks, as granted to it directly
 * (privileges that come only through a role are not seen: grant them to the account).
 */
export async function missingAdminPrivileges(session: AdminSession): Promise<string[]> {
  // A plain account sees only its own rows here.
  const rows = await session.query(
    `SELECT PRIVILEGE_TYPE AS privilege FROM information_schema.USER_PRIVILEGES
      WHERE GRANTEE = CONCAT("'", SUBSTRING_INDEX(CURRENT_USER(), '@', 1), "'@'",
        SUBSTRING_INDEX(CURRENT_USER(), '@', -1), "'")`,
  );
  const granted = new Set(rows.map((row) => String(row.privilege)));
  return ADMIN_PRIVILEGES.filter((privilege) => !granted.has(privilege));
}

/** A column's value as text: '' for NULL or a missing column. */
function textOf(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint') return String(value);
  return '';
}
