/**
 * The snapshot `GET /status.json` answers and `GET /status/events` sends, as the page reads it.
 * A copy of `StatusSnapshot` (src/monitor/status-snapshot-schema.ts), which the browser build
 * cannot import (TypeBox is not served); test/browser/status-page.test.ts fails to compile when
 * the two drift apart.
 */
export interface StatusSnapshot {
  at: string;
  instance: { name: string; version: string; uptimeSeconds: number };
  databases: StatusDatabase[];
  data: { version: number | null; rows: number | null };
  lastImport: {
    at: string;
    outcome: 'imported' | 'skipped' | 'rejected' | 'failed';
    rows: number;
  } | null;
  lastBackup: {
    at: string;
    ageSeconds: number;
    bytes: number | null;
    verified: boolean;
    rows: number;
  } | null;
  problems: string[];
  haproxy: {
    active: string | null;
    servers: { name: string; status: string; backup: boolean }[];
  } | null;
  traffic: { requestsPerSecond: number; p99Ms: number | null };
}

/** One database server as the instance sees it; `name` is a label, never a host name. */
export interface StatusDatabase {
  name: string;
  role: 'primary' | 'replica' | 'sqlite';
  reachable: boolean;
  writable?: boolean;
  healthy: boolean;
  reason: string | null;
  lagSeconds: number | null;
}
