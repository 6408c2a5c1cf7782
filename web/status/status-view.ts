import { el } from '../shared/dom.js';
import { formatBytes, formatClock, formatCount, formatDuration, formatNumber } from './format.js';
import type { StatusDatabase, StatusSnapshot } from './status-snapshot.js';

/** The element with `id`, which index.html has; a missing one is a bug in the page. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`the status page has no #${id}`);
  return element as T;
}

const text = (id: string, value: string) => {
  byId(id).textContent = value;
};

/** Shows one snapshot: every section of the page but the chart and the connection line. */
export function renderStatusView(snapshot: StatusSnapshot): void {
  const { instance, data } = snapshot;
  text('instance-name', `on ${instance.name}`);
  text('instance-server', instance.name);
  text('instance-version', instance.version);
  text('instance-uptime', formatDuration(instance.uptimeSeconds));
  const updated = byId('updated');
  updated.setAttribute('datetime', snapshot.at);
  updated.textContent = formatClock(snapshot.at);

  const problems = byId('problems');
  problems.replaceChildren(
    ...snapshot.problems.map((problem) => el('li', { class: 'problem' }, problem)),
  );
  byId('problems-none').hidden = snapshot.problems.length > 0;
  byId('problems-section').dataset.state = snapshot.problems.length > 0 ? 'bad' : 'ok';
  document.title = `${snapshot.problems.length > 0 ? `(${snapshot.problems.length}) ` : ''}users-api status: ${instance.name}`;

  text(
    'data-rows',
    data.rows === null ? 'unknown (the database cannot be read)' : formatCount(data.rows),
  );
  text('data-version', data.version === null ? 'unknown' : String(data.version));
  text('last-import', describeImport(snapshot.lastImport));
  text('last-backup', describeBackup(snapshot.lastBackup));

  byId<HTMLTableElement>('databases').tBodies[0]!.replaceChildren(
    ...snapshot.databases.map(databaseRow),
  );
  renderHaproxy(snapshot.haproxy);
}

function databaseRow(db: StatusDatabase): HTMLTableRowElement {
  const role =
    db.writable === undefined ? db.role : `${db.role}, ${db.writable ? 'writable' : 'read-only'}`;
  const lag =
    db.lagSeconds !== null
      ? `${formatNumber(db.lagSeconds)} s`
      : db.role === 'replica'
        ? 'unknown'
        : 'not applicable';
  return el(
    'tr',
    { 'data-name': db.name, 'data-reachable': String(db.reachable) },
    el('th', { scope: 'row' }, db.name),
    el('td', {}, role),
    yesNo(db.reachable, 'reachable', 'unreachable'),
    yesNo(db.healthy, 'yes', 'no'),
    el('td', {}, lag),
    el('td', {}, db.reason ?? ''),
  );
}

/** A cell whose words say it (the colour only repeats them). */
function yesNo(value: boolean, yes: string, no: string): HTMLTableCellElement {
  return el('td', { class: value ? 'ok' : 'bad' }, value ? yes : no);
}

function describeImport(last: StatusSnapshot['lastImport']): string {
  if (last === null) return 'none since this instance started';
  const rows = `${formatCount(last.rows)} rows`;
  return `${last.outcome} (${rows}) at ${formatClock(last.at)}, ${ago(last.at)}`;
}

function describeBackup(last: StatusSnapshot['lastBackup']): string {
  if (last === null) return 'none recorded in BACKUP_DIR';
  const size = last.bytes === null ? 'file no longer in BACKUP_DIR' : formatBytes(last.bytes);
  return (
    `${formatDuration(last.ageSeconds)} ago (${new Date(last.at).toISOString()}), ` +
    `${size}, ${formatCount(last.rows)} rows, ${last.verified ? 'verified' : 'not verified'}`
  );
}

function ago(iso: string): string {
  return `${formatDuration((Date.now() - Date.parse(iso)) / 1000)} ago`;
}

function renderHaproxy(haproxy: StatusSnapshot['haproxy']): void {
  const section = byId('haproxy-section');
  section.hidden = haproxy === null;
  if (haproxy === null) return;
  text(
    'haproxy-active',
    haproxy.active === null
      ? 'HAProxy has no web server up to send traffic to.'
      : `HAProxy sends traffic to ${haproxy.active}.`,
  );
  byId<HTMLTableElement>('haproxy-servers').tBodies[0]!.replaceChildren(
    ...haproxy.servers.map((server) =>
      el(
        'tr',
        { 'data-name': server.name },
        el('th', { scope: 'row' }, server.name),
        el('td', { class: server.status.startsWith('UP') ? 'ok' : 'bad' }, server.status),
        el('td', {}, server.backup ? 'backup' : 'active'),
      ),
    ),
  );
}
