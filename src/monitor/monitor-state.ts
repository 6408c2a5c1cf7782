import { readFile, rename, writeFile } from 'node:fs/promises';

export type UrlState = 'unknown' | 'up' | 'down';

/** What the monitor remembers about one URL, across restarts when `--state` is given. */
export interface UrlHistory {
  state: UrlState;
  /** ISO time the current state began. */
  since: string;
  consecutiveFailures: number;
  checks: number;
  failures: number;
  /** The latest check latencies, newest last, at most MAX_LATENCIES (for p50/p95). */
  latenciesMs: number[];
}

export interface MonitorState {
  version: 1;
  urls: Record<string, UrlHistory>;
}

/** Enough samples for a stable p95 while the state file stays small (~10 KB a URL). */
export const MAX_LATENCIES = 1000;

export function emptyHistory(at: string): UrlHistory {
  return {
    state: 'unknown',
    since: at,
    consecutiveFailures: 0,
    checks: 0,
    failures: 0,
    latenciesMs: [],
  };
}

/**
 * Reads the state file; a missing file is a fresh start. A file that is not ours is an error
 * (the operator pointed `--state` at the wrong file), never silently overwritten.
 */
export async function loadMonitorState(path: string): Promise<MonitorState> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, urls: {} };
    throw error;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`${path} is not a monitor state file (not JSON)`);
  }
  const state = parsed as Partial<MonitorState> | null;
  if (state?.version !== 1 || typeof state.urls !== 'object' || state.urls === null) {
    throw new Error(`${path} is not a monitor state file (no "version": 1 and "urls")`);
  }
  return state as MonitorState;
}

/** Writes the state to a temporary file and renames it over the old one: never half-written. */
export async function saveMonitorState(path: string, state: MonitorState): Promise<void> {
  const temporary = `${path}.${process.pid}.tmp`;
  await writeFile(temporary, JSON.stringify(state) + '\n');
  await rename(temporary, path);
}
