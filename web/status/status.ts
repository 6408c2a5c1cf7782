/**
 * The status page: one snapshot at a time from the event stream, the chart of the last minutes,
 * and a polite announcement of what changed for screen-reader users.
 */
import { formatClock } from './format.js';
import { createStatusChart } from './status-chart.js';
import { openStatusFeed, type FeedState } from './status-feed.js';
import type { StatusSnapshot } from './status-snapshot.js';
import { byId, renderStatusView } from './status-view.js';

/** How far back the chart reaches, and the most readings it keeps (a 250 ms interval's 5 min). */
const CHART_WINDOW_MS = 5 * 60_000;
const CHART_CAPACITY = 1200;

const chart = createStatusChart({
  container: byId('charts'),
  readingsBody: byId<HTMLTableElement>('readings').tBodies[0]!,
  windowMs: CHART_WINDOW_MS,
  capacity: CHART_CAPACITY,
});
byId('chart-window').textContent = '5 minutes';

const connection = byId('connection');
const announcer = byId('announcer');
let lastSnapshot: StatusSnapshot | undefined;
let lastState: FeedState['kind'] = 'connecting';

/** Says `message` once through the polite live region. */
function announce(message: string): void {
  // The same text twice in a row is not read again; a fresh node is.
  announcer.replaceChildren(document.createTextNode(message));
}

function showState(state: FeedState): void {
  connection.dataset.state = state.kind;
  document.body.dataset.feed = state.kind;
  const at = lastSnapshot === undefined ? '' : ` (last update ${formatClock(lastSnapshot.at)})`;
  switch (state.kind) {
    case 'connecting':
      connection.textContent = lastState === 'disconnected' ? `Reconnecting…${at}` : 'Connecting…';
      break;
    case 'live':
      connection.textContent = 'Live: updates as they happen';
      if (lastState === 'disconnected') announce('Live updates are back.');
      break;
    case 'disconnected':
      connection.textContent = `Disconnected: ${state.reason}${at}`;
      if (lastState !== 'disconnected') announce(`Disconnected: ${state.reason}.`);
      break;
  }
  // "connecting" between two failures is not news: the page stays disconnected until live.
  if (state.kind !== 'connecting') lastState = state.kind;
}

function showSnapshot(snapshot: StatusSnapshot): void {
  const before = new Set(lastSnapshot?.problems ?? []);
  const now = new Set(snapshot.problems);
  const started = snapshot.problems.filter((problem) => !before.has(problem));
  const ended = [...before].filter((problem) => !now.has(problem));
  lastSnapshot = snapshot;
  renderStatusView(snapshot);
  const lags = snapshot.databases
    .map((db) => db.lagSeconds)
    .filter((lag): lag is number => lag !== null);
  chart.add({
    atMs: Date.parse(snapshot.at),
    at: snapshot.at,
    requestsPerSecond: snapshot.traffic.requestsPerSecond,
    p99Ms: snapshot.traffic.p99Ms,
    lagSeconds: lags.length === 0 ? null : Math.max(...lags),
  });
  const news = [
    ...started.map((problem) => `Problem: ${problem}.`),
    ...ended.map((problem) => `Resolved: ${problem}.`),
  ];
  if (ended.length > 0 && now.size === 0) news.push('Nothing is wrong now.');
  if (news.length > 0) announce(news.join(' '));
}

openStatusFeed({
  eventsUrl: 'status/events',
  snapshotUrl: 'status.json',
  snapshot: showSnapshot,
  state: showState,
});
