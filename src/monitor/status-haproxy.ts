import type { HaproxyStatsConfig } from '../config/config.js';

/** What HAProxy's stats say about the web servers, and what is wrong with them. */
export interface HaproxyView {
  /** The server HAProxy sends traffic to now; null when none is up (or stats unreadable). */
  active: string | null;
  servers: { name: string; status: string; backup: boolean }[];
  /** Plain sentences for the status page's problems; empty when all is well. */
  problems: string[];
}

export interface HaproxyStatsReaderOptions extends HaproxyStatsConfig {
  /** Longest one read of the stats page may take. */
  timeoutMs: number;
}

/** Far more than the CSV of a few proxies; a bigger answer is not HAProxy's stats. */
const MAX_CSV_BYTES = 1024 * 1024;

/**
 * Reads HAProxy's stats CSV (`<stats url>;csv`, HTTP Basic) and says which server of the
 * backend takes traffic: in active/backup mode, the first server that is up and not a backup,
 * else the first backup that is up (as HAProxy itself chooses). A failed read is reported as a
 * problem, never thrown: the rest of the status page does not depend on HAProxy. Messages never
 * carry the stats URL or its credentials.
 */
export function createHaproxyStatsReader(
  options: HaproxyStatsReaderOptions,
): () => Promise<HaproxyView> {
  const url = new URL(options.url);
  url.pathname = `${url.pathname};csv`;
  const headers: Record<string, string> =
    options.password === undefined
      ? {}
      : {
          authorization: `Basic ${Buffer.from(`${options.user}:${options.password}`).toString('base64')}`,
        };
  return async () => {
    let csv: string;
    try {
      const response = await fetch(url, {
        headers,
        signal: AbortSignal.timeout(options.timeoutMs),
        redirect: 'error',
      });
      if (response.status === 401 || response.status === 403) {
        await response.body?.cancel();
        return unreadable(
          `HAProxy's stats page answered ${response.status}: check HAPROXY_STATS_USER and HAPROXY_STATS_PASSWORD_FILE, and that MONITORING_ALLOW lets this instance in`,
        );
      }
      if (!response.ok) {
        await response.body?.cancel();
        return unreadable(`HAProxy's stats page answered ${response.status}`);
      }
      csv = await response.text();
    } catch (error) {
      const name = (error as { name?: unknown }).name;
      const cause = (error as { cause?: { code?: unknown } }).cause?.code;
      return unreadable(
        name === 'TimeoutError'
          ? `HAProxy's stats page did not answer within ${options.timeoutMs} ms`
          : `HAProxy's stats page cannot be read (${typeof cause === 'string' ? cause : 'no answer'})`,
      );
    }
    if (csv.length > MAX_CSV_BYTES) return unreadable("HAProxy's stats answer is not its CSV");
    return readStatsCsv(csv, options.backend);
  };
}

/** The view of `backend` in HAProxy's stats CSV (exported for the unit tests). */
export function readStatsCsv(csv: string, backend: string): HaproxyView {
  const [headerLine = '', ...lines] = csv.split('\n');
  const header = headerLine.replace(/^# /, '').split(',');
  const column = (name: string) => header.indexOf(name);
  const [pxname, svname, status, bck] = ['pxname', 'svname', 'status', 'bck'].map(column);
  if ([pxname, svname, status, bck].some((index) => index === -1)) {
    return unreadable("HAProxy's stats answer is not its CSV");
  }
  const servers = lines
    .map((line) => line.split(','))
    .filter(
      (fields) =>
        fields[pxname!] === backend &&
        fields[svname!] !== 'BACKEND' &&
        fields[svname!] !== 'FRONTEND',
    )
    .map((fields) => ({
      name: fields[svname!]!,
      status: fields[status!]!,
      backup: fields[bck!] === '1',
    }));
  if (servers.length === 0) {
    return unreadable(`HAProxy has no backend ${backend} with servers (HAPROXY_STATS_BACKEND)`);
  }
  // "UP 1/3" is up and going down; "no check" is a server HAProxy does not check, taken as up.
  const up = (server: { status: string }) => /^(UP|no check)/.test(server.status);
  const active =
    servers.find((server) => up(server) && !server.backup) ??
    servers.find((server) => up(server) && server.backup);
  const problems = servers
    .filter((server) => !up(server))
    .map(
      (server) =>
        `HAProxy: ${server.backup ? 'backup ' : ''}web server ${server.name} is ${server.status}`,
    );
  if (active === undefined) problems.push('HAProxy: no web server is up');
  return { active: active?.name ?? null, servers, problems };
}

function unreadable(problem: string): HaproxyView {
  return { active: null, servers: [], problems: [problem] };
}
