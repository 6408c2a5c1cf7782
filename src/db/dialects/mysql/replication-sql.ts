import { sql } from 'kysely';
import type { DatabaseExecutor } from '../../database.js';
import type { ReplicationSql } from '../../topology-monitor.js';

type Flavor = 'mariadb' | 'mysql';

/**
 * MariaDB and MySQL answer the same questions in different SQL: MariaDB 10.5+ accepts
 * `SHOW REPLICA STATUS` but keeps the old column names and waits with MASTER_GTID_WAIT;
 * MySQL 8.0.22+ renamed the columns and waits with WAIT_FOR_EXECUTED_GTID_SET.
 */
export function createMysqlReplicationSql(): ReplicationSql {
  const flavors = new WeakMap<DatabaseExecutor, Flavor>();
  const flavorOf = async (executor: DatabaseExecutor): Promise<Flavor> => {
    const known = flavors.get(executor);
    if (known !== undefined) return known;
    const { rows } = await sql<{ version: string }>`SELECT VERSION() AS version`.execute(executor);
    const flavor = /mariadb/i.test(rows[0]?.version ?? '') ? 'mariadb' : 'mysql';
    flavors.set(executor, flavor);
    return flavor;
  };
  return {
    async replicaStatus(replica) {
      let rows: Record<string, unknown>[];
      try {
        rows = (await sql<Record<string, unknown>>`SHOW REPLICA STATUS`.execute(replica)).rows;
      } catch (error) {
        // MySQL before 8.0.22 knows only the old statement.
        if ((error as { code?: unknown }).code !== 'ER_PARSE_ERROR') throw error;
        rows = (await sql<Record<string, unknown>>`SHOW SLAVE STATUS`.execute(replica)).rows;
      }
      const row = rows[0];
      if (row === undefined) return undefined;
      const column = (current: string, old: string) => row[current] ?? row[old];
      const lag = column('Seconds_Behind_Source', 'Seconds_Behind_Master');
      return {
        ioState: ioStateOf(column('Replica_IO_Running', 'Slave_IO_Running')),
        sqlRunning: column('Replica_SQL_Running', 'Slave_SQL_Running') === 'Yes',
        lagSeconds: lag === null || lag === undefined ? null : Number(lag),
      };
    },
    async heartbeat(executor) {
      try {
        const { rows } = await sql<{ beat_us: number | string | null; now_us: number | string }>`
          SELECT (SELECT beat_us FROM replication_heartbeat WHERE id = 1) AS beat_us,
            CAST(UNIX_TIMESTAMP(NOW(6)) * 1000000 AS SIGNED) AS now_us`.execute(executor);
        const beat = rows[0]?.beat_us;
        return {
          beatAtMs: beat === null || beat === undefined ? null : Number(beat) / 1000,
          nowMs: Number(rows[0]?.now_us) / 1000,
        };
      } catch (error) {
        // A server the heartbeat migration has not reached yet has no heartbeat to show.
        if ((error as { code?: unknown }).code !== 'ER_NO_SUCH_TABLE') throw error;
        return { beatAtMs: null, nowMs: Date.now() };
      }
    },
    async readOnly(executor) {
      const { rows } = await sql<{
        read_only: number | string;
      }>`SELECT @@GLOBAL.read_only AS read_only`.execute(executor);
      return Number(rows[0]?.read_only) !== 0;
    },
    async ping(executor) {
      await sql`SELECT 1`.execute(executor);
    },
    async hasMigration(executor, migration) {
      try {
        const { rows } = await sql`
          SELECT 1 FROM kysely_migration WHERE name = ${migration}`.execute(executor);
        return rows.length > 0;
      } catch (error) {
        // A database no migration ever ran on has no schema at all.
        if ((error as { code?: unknown }).code === 'ER_NO_SUCH_TABLE') return false;
        throw error;
      }
    },
    async primaryPosition(primary) {
      const query =
        (await flavorOf(primary)) === 'mariadb'
          ? sql<{ position: string }>`SELECT @@GLOBAL.gtid_binlog_pos AS position`
          : sql<{ position: string }>`SELECT @@GLOBAL.gtid_executed AS position`;
      return (await query.execute(primary)).rows[0]?.position ?? '';
    },
    async waitForPosition(replica, position, seconds) {
      if (position === '') return true;
      if ((await flavorOf(replica)) === 'mariadb') {
        const { rows } = await sql<{
          result: number | string;
        }>`SELECT MASTER_GTID_WAIT(${position}, ${seconds}) AS result`.execute(replica);
        return Number(rows[0]?.result) === 0;
      }
      if (seconds <= 0) {
        // WAIT_FOR_EXECUTED_GTID_SET(set, 0) waits forever on MySQL: ask without waiting.
        const { rows } = await sql<{
          applied: number | string;
        }>`SELECT GTID_SUBSET(${position}, @@GLOBAL.gtid_executed) AS applied`.execute(replica);
        return Number(rows[0]?.applied) === 1;
      }
      // MySQL takes whole seconds here.
      const { rows } = await sql<{
        result: number | string;
      }>`SELECT WAIT_FOR_EXECUTED_GTID_SET(${position}, ${Math.ceil(seconds)}) AS result`.execute(
        replica,
      );
      return Number(rows[0]?.result) === 0;
    },
  };
}

function ioStateOf(value: unknown): 'running' | 'connecting' | 'stopped' {
  if (value === 'Yes') return 'running';
  return value === 'Connecting' ? 'connecting' : 'stopped';
}
