/**
 * The directory page: a table of users over `GET /api` (filters, sort, keyset pages both ways),
 * the count from `GET /api/count` on its own, a detail dialog over `GET /api/users/:id` with
 * edit and delete (`If-Match`, the admin token kept in sessionStorage only). The view lives in
 * the URL: every change is a history entry, and the back button restores the view before it.
 */
import { apiErrorOf, el, getJson } from '../shared/dom.js';

interface ApiUser {
  ID: number;
  NAME: string;
  STREET: string;
  CITY: string;
  STATE: string;
  USER_DATE: string;
}

type Field = Exclude<keyof ApiUser, 'ID'>;

const COLUMNS: readonly { key: Field; label: string; sortable: boolean }[] = [
  { key: 'NAME', label: 'Name', sortable: true },
  // The API sorts by the indexed columns only; a street sort would scan the table.
  { key: 'STREET', label: 'Street', sortable: false },
  { key: 'CITY', label: 'City', sortable: true },
  { key: 'STATE', label: 'State', sortable: true },
  { key: 'USER_DATE', label: 'User date', sortable: true },
];
const FIELDS: readonly Field[] = COLUMNS.map((column) => column.key);

const FILTERS = ['q', 'name', 'city', 'state'] as const;
type Filter = (typeof FILTERS)[number];
const PAGE_SIZES = ['25', '50', '100'];
const DEFAULT_PAGE_SIZE = '50';
const SORTS = COLUMNS.filter((column) => column.sortable).flatMap((column) => [
  column.key,
  `-${column.key}`,
]);
const TOKEN_KEY = 'users-api.admin-token';

/** Everything the URL says about the view. Empty strings are "not set". */
interface View extends Record<Filter, string> {
  sort: string;
  limit: string;
  cursor: string;
  user: string;
}

function byId<T extends HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (element === null) throw new Error(`the page lacks #${id}`);
  return element as T;
}

const page = {
  form: byId<HTMLFormElement>('filters'),
  inputs: Object.fromEntries(
    FILTERS.map((name) => [name, byId<HTMLInputElement>(`filter-${name}`)]),
  ) as Record<Filter, HTMLInputElement>,
  limit: byId<HTMLSelectElement>('filter-limit'),
  count: byId<HTMLParagraphElement>('count'),
  message: byId<HTMLParagraphElement>('message'),
  error: byId<HTMLParagraphElement>('error'),
  exportCsv: byId<HTMLAnchorElement>('export-csv'),
  exportNdjson: byId<HTMLAnchorElement>('export-ndjson'),
  table: byId<HTMLTableElement>('results'),
  caption: byId<HTMLTableCaptionElement>('results-caption'),
  head: byId<HTMLTableRowElement>('results-head'),
  body: byId<HTMLTableSectionElement>('results-body'),
  first: byId<HTMLButtonElement>('page-first'),
  prev: byId<HTMLButtonElement>('page-prev'),
  next: byId<HTMLButtonElement>('page-next'),
  dialog: byId<HTMLDialogElement>('detail'),
  detailTitle: byId<HTMLHeadingElement>('detail-title'),
  detailFields: byId<HTMLDListElement>('detail-fields'),
  detailError: byId<HTMLParagraphElement>('detail-error'),
  detailClose: byId<HTMLButtonElement>('detail-close'),
  edit: byId<HTMLFormElement>('edit'),
  editInputs: Object.fromEntries(
    FIELDS.map((field) => [field, byId<HTMLInputElement>(`edit-${field}`)]),
  ) as Record<Field, HTMLInputElement>,
  token: byId<HTMLInputElement>('admin-token'),
  editStatus: byId<HTMLParagraphElement>('edit-status'),
  reload: byId<HTMLButtonElement>('edit-reload'),
  remove: byId<HTMLButtonElement>('edit-delete'),
};

// ---------------------------------------------------------------------------------------------
// The view and the URL

function viewOf(search: string): View {
  const params = new URLSearchParams(search);
  const text = (name: string) => params.get(name)?.trim() ?? '';
  const sort = text('sort');
  const limit = text('limit');
  const user = text('user');
  return {
    q: text('q'),
    name: text('name'),
    city: text('city'),
    state: text('state').toUpperCase(),
    sort: SORTS.includes(sort) ? sort : '',
    limit: PAGE_SIZES.includes(limit) ? limit : DEFAULT_PAGE_SIZE,
    cursor: /^[A-Za-z0-9_-]{1,1024}$/.test(text('cursor')) ? text('cursor') : '',
    user: /^[1-9][0-9]{0,15}$/.test(user) ? user : '',
  };
}

/** The page's own URL for a view: only what differs from the defaults, in a fixed order. */
function urlOf(view: View): string {
  const params = filterParams(view);
  if (view.sort !== '') params.set('sort', view.sort);
  if (view.limit !== DEFAULT_PAGE_SIZE) params.set('limit', view.limit);
  if (view.cursor !== '') params.set('cursor', view.cursor);
  if (view.user !== '') params.set('user', view.user);
  const search = params.toString();
  return search === '' ? location.pathname : `${location.pathname}?${search}`;
}

function filterParams(view: View): URLSearchParams {
  const params = new URLSearchParams();
  for (const name of FILTERS) if (view[name] !== '') params.set(name, view[name]);
  return params;
}

/** The `/api` URL of the view's page, and of its whole list in an export format. */
function apiUrlOf(view: View, format?: 'csv' | 'ndjson'): string {
  const params = filterParams(view);
  if (view.sort !== '') params.set('sort', view.sort);
  if (format !== undefined) {
    params.set('format', format);
  } else {
    params.set('limit', view.limit);
    if (view.cursor !== '') params.set('cursor', view.cursor);
    params.set('fields', `ID,${FIELDS.join(',')}`);
  }
  return `/api?${params.toString()}`;
}

let view = viewOf(location.search);

/** Shows `next` and makes it a new history entry (the back button returns to this one). */
function navigate(next: View): void {
  view = next;
  history.pushState(null, '', urlOf(view));
  void show();
}

window.addEventListener('popstate', () => {
  view = viewOf(location.search);
  void show();
});

// ---------------------------------------------------------------------------------------------
// Showing a view: the list, the count and the detail each load only when their part changed

let shownPage = '';
let shownCount = '';
let shownUser = '';

async function show(options: { reload?: boolean } = {}): Promise<void> {
  fillFilterForm();
  drawHead();
  page.exportCsv.href = apiUrlOf(view, 'csv');
  page.exportNdjson.href = apiUrlOf(view, 'ndjson');
  const pageUrl = apiUrlOf(view);
  const countUrl = `/api/count?${filterParams(view).toString()}`;
  const user = view.user !== shownUser ? showUser(view.user) : undefined;
  const countNeeded = options.reload === true || countUrl !== shownCount;
  if (countNeeded) page.count.textContent = 'Counting…';
  if (options.reload === true || pageUrl !== shownPage) await loadPage(pageUrl);
  // After the page, not beside it: on SQLite both share one connection, and a count over a
  // large table would hold the rows back (docs/web-ui.md, "Speed").
  if (countNeeded && countUrl === `/api/count?${filterParams(view).toString()}`) {
    await loadCount(countUrl);
  }
  await user;
}

function fillFilterForm(): void {
  for (const name of FILTERS) page.inputs[name].value = view[name];
  page.limit.value = view.limit;
}

function drawHead(): void {
  const cells = COLUMNS.map(({ key, label, sortable }) => {
    const ascending = view.sort === key;
    const descending = view.sort === `-${key}`;
    const sort = ascending ? 'ascending' : descending ? 'descending' : undefined;
    if (!sortable) return el('th', { scope: 'col' }, label);
    const button = el(
      'button',
      { type: 'button', 'data-sort': key },
      label,
      el(
        'span',
        { class: 'sort-mark', 'aria-hidden': 'true' },
        ascending ? '▲' : descending ? '▼' : '',
      ),
    );
    return el('th', { scope: 'col', 'aria-sort': sort }, button);
  });
  page.head.replaceChildren(...cells);
}

page.head.addEventListener('click', (event) => {
  const button = (event.target as Element).closest('button[data-sort]');
  if (!(button instanceof HTMLButtonElement)) return;
  const key = button.dataset.sort ?? '';
  navigate({ ...view, sort: view.sort === key ? `-${key}` : key, cursor: '' });
  // The header is drawn again: keep the focus on the same column's button.
  page.head.querySelector<HTMLButtonElement>(`button[data-sort="${key}"]`)?.focus();
});

let pageRequest: AbortController | undefined;
let renders = 0;
let nextCursor = '';
let prevCursor = '';

async function loadPage(url: string): Promise<void> {
  pageRequest?.abort();
  const request = new AbortController();
  pageRequest = request;
  page.table.setAttribute('aria-busy', 'true');
  performance.mark('directory:page-requested');
  try {
    const response = await fetch(url, {
      headers: { accept: 'application/json' },
      signal: request.signal,
    });
    if (!response.ok) throw await apiErrorOf(response);
    const users = (await response.json()) as ApiUser[];
    const links = linksOf(response.headers.get('link'));
    if (request.signal.aborted) return;
    nextCursor = cursorOf(links.get('next'));
    prevCursor = cursorOf(links.get('prev'));
    drawRows(users);
    shownPage = url;
    showError(undefined);
  } catch (error) {
    if (request.signal.aborted) return;
    nextCursor = '';
    prevCursor = '';
    page.body.replaceChildren();
    shownPage = '';
    showError(error);
  } finally {
    if (pageRequest === request) {
      page.first.disabled = view.cursor === '';
      page.prev.disabled = prevCursor === '';
      page.next.disabled = nextCursor === '';
      page.table.setAttribute('aria-busy', 'false');
      renders += 1;
      page.table.dataset.renders = String(renders);
      // The bench reads these: the time from navigation (or the request) to a filled table.
      performance.mark('directory:rendered');
      performance.measure('directory:page', 'directory:page-requested', 'directory:rendered');
    }
  }
}

function drawRows(users: readonly ApiUser[]): void {
  const described = describeList();
  page.caption.textContent = described;
  if (users.length === 0) {
    const empty = el('td', { colspan: String(COLUMNS.length), class: 'empty' }, 'No users match.');
    page.body.replaceChildren(el('tr', {}, empty));
    return;
  }
  const rows = users.map((user) => {
    const link = el(
      'a',
      { href: urlOf({ ...view, user: String(user.ID) }), 'data-user': String(user.ID) },
      user.NAME,
    );
    return el(
      'tr',
      {},
      el('td', {}, link),
      el('td', {}, user.STREET),
      el('td', {}, user.CITY),
      el('td', {}, user.STATE),
      el('td', {}, user.USER_DATE),
    );
  });
  page.body.replaceChildren(...rows);
}

function describeList(): string {
  const parts = FILTERS.filter((name) => view[name] !== '').map(
    (name) =>
      `${{ q: 'containing', name: 'name starting with', city: 'in city', state: 'in state' }[name]} “${view[name]}”`,
  );
  const column = COLUMNS.find((candidate) => view.sort.replace(/^-/, '') === candidate.key);
  const order =
    column === undefined
      ? 'in load order'
      : `sorted by ${column.label.toLowerCase()}, ${view.sort.startsWith('-') ? 'descending' : 'ascending'}`;
  return `Users${parts.length > 0 ? ` ${parts.join(', ')}` : ''}, ${order}`;
}

page.body.addEventListener('click', (event) => {
  const link = (event.target as Element).closest('a[data-user]');
  if (!(link instanceof HTMLAnchorElement) || event.ctrlKey || event.metaKey || event.shiftKey) {
    return;
  }
  event.preventDefault();
  navigate({ ...view, user: link.dataset.user ?? '' });
});

/** RFC 8288 `Link` values by rel (the API's are relative `/api?…` URLs). */
function linksOf(header: string | null): Map<string, string> {
  const links = new Map<string, string>();
  for (const match of (header ?? '').matchAll(/<([^>]*)>\s*;\s*rel="?([a-z]+)"?/g)) {
    links.set(match[2] ?? '', match[1] ?? '');
  }
  return links;
}

function cursorOf(link: string | undefined): string {
  if (link === undefined) return '';
  return new URL(link, location.href).searchParams.get('cursor') ?? '';
}

page.next.addEventListener('click', () => navigate({ ...view, cursor: nextCursor }));
page.prev.addEventListener('click', () => navigate({ ...view, cursor: prevCursor }));
page.first.addEventListener('click', () => navigate({ ...view, cursor: '' }));

let countRequest: AbortController | undefined;

/** The count can take longer than a page on a large table: it never holds the table back. */
async function loadCount(url: string): Promise<void> {
  countRequest?.abort();
  const request = new AbortController();
  countRequest = request;
  page.count.textContent = 'Counting…';
  try {
    const { count } = await getJson<{ count: number }>(url, { signal: request.signal });
    if (request.signal.aborted) return;
    page.count.textContent = `${count.toLocaleString('en')} ${count === 1 ? 'user matches' : 'users match'}`;
    shownCount = url;
  } catch (error) {
    if (request.signal.aborted) return;
    page.count.textContent = `Count unavailable: ${messageOf(error)}`;
    shownCount = '';
  }
}

function showError(error: unknown): void {
  page.error.hidden = error === undefined;
  page.error.textContent = error === undefined ? '' : `Could not load users: ${messageOf(error)}`;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// ---------------------------------------------------------------------------------------------
// Filters

page.form.addEventListener('submit', (event) => {
  event.preventDefault();
  if (!page.form.reportValidity()) return;
  const filters = Object.fromEntries(
    FILTERS.map((name) => [name, page.inputs[name].value.trim()]),
  ) as Record<Filter, string>;
  filters.state = filters.state.toUpperCase();
  navigate({ ...view, ...filters, limit: page.limit.value, cursor: '', user: '' });
});

page.form.addEventListener('reset', (event) => {
  event.preventDefault();
  navigate({ ...viewOf(''), sort: view.sort, limit: view.limit });
  page.inputs.q.focus();
});

// ---------------------------------------------------------------------------------------------
// The detail dialog: one user, edit and delete with If-Match

let shown: { user: ApiUser; etag: string } | undefined;
let confirmingDelete = false;

async function showUser(id: string): Promise<void> {
  shownUser = id;
  if (id === '') {
    if (page.dialog.open) page.dialog.close();
    shown = undefined;
    return;
  }
  resetEditor();
  page.detailTitle.textContent = 'Loading user…';
  page.detailFields.replaceChildren();
  if (!page.dialog.open) page.dialog.showModal();
  await loadUser(id);
}

async function loadUser(id: string): Promise<void> {
  try {
    const response = await fetch(`/api/users/${id}`, {
      headers: { accept: 'application/json' },
      cache: 'no-store',
    });
    if (!response.ok) throw await apiErrorOf(response);
    const user = (await response.json()) as ApiUser;
    if (shownUser !== id) return;
    shown = { user, etag: response.headers.get('etag') ?? '' };
    page.detailTitle.textContent = user.NAME;
    page.detailFields.replaceChildren(
      el('dt', {}, 'ID'),
      el('dd', {}, user.ID),
      ...COLUMNS.flatMap((column) => [el('dt', {}, column.label), el('dd', {}, user[column.key])]),
    );
    for (const field of FIELDS) page.editInputs[field].value = user[field];
    page.edit.hidden = false;
  } catch (error) {
    if (shownUser !== id) return;
    shown = undefined;
    page.detailTitle.textContent = `User ${id}`;
    page.edit.hidden = true;
    showDetailError(`Could not load this user: ${messageOf(error)}`);
  }
}

function resetEditor(): void {
  showDetailError(undefined);
  page.editStatus.textContent = '';
  page.reload.hidden = true;
  confirmingDelete = false;
  page.remove.textContent = 'Delete user';
}

function showDetailError(text: string | undefined): void {
  page.detailError.hidden = text === undefined;
  page.detailError.textContent = text ?? '';
}

page.detailClose.addEventListener('click', () => page.dialog.close());
page.dialog.addEventListener('close', () => {
  // Closed by the button or Escape: a history entry without the user, as a link would make.
  if (view.user !== '') navigate({ ...view, user: '' });
});

page.token.value = sessionStorage.getItem(TOKEN_KEY) ?? '';
page.token.addEventListener('change', () => {
  const token = page.token.value.trim();
  if (token === '') sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
});

/** A write to the shown user, conditional on the ETag it was read with. */
async function writeUser(method: 'PATCH' | 'DELETE', body?: Partial<ApiUser>): Promise<Response> {
  const headers: Record<string, string> = {
    accept: 'application/json',
    'if-match': shown?.etag ?? '',
  };
  const token = page.token.value.trim();
  if (token !== '') headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = 'application/merge-patch+json';
  return fetch(`/api/users/${shown?.user.ID}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function explainFailure(response: Response, action: string): Promise<void> {
  const error = await apiErrorOf(response);
  if (response.status === 412) {
    showDetailError(
      `Not ${action}: someone changed this user after you opened it (412 Precondition Failed). ` +
        'Reload this user to see the current version, then try again.',
    );
    page.reload.hidden = false;
  } else if (response.status === 401 || response.status === 403) {
    showDetailError(
      `Not ${action}: the admin token was refused (${response.status}). ${error.message}`,
    );
    page.token.focus();
  } else {
    showDetailError(`Not ${action} (${response.status}): ${error.message}`);
  }
}

page.edit.addEventListener('submit', (event) => {
  event.preventDefault();
  void saveUser();
});

async function saveUser(): Promise<void> {
  if (shown === undefined) return;
  resetEditor();
  const changes: Partial<ApiUser> = {};
  for (const field of FIELDS) {
    const value = page.editInputs[field].value;
    if (value !== shown.user[field]) changes[field] = value;
  }
  if (Object.keys(changes).length === 0) {
    page.editStatus.textContent = 'Nothing to save: no field was changed.';
    return;
  }
  page.editStatus.textContent = 'Saving…';
  const response = await writeUser('PATCH', changes);
  page.editStatus.textContent = '';
  if (!response.ok) return explainFailure(response, 'saved');
  const id = String(shown.user.ID);
  await loadUser(id);
  page.editStatus.textContent = 'Saved.';
  await show({ reload: true });
}

page.reload.addEventListener('click', () => {
  resetEditor();
  void loadUser(view.user).then(() => {
    page.editStatus.textContent = 'Reloaded: this is the current version.';
    page.editInputs.NAME.focus();
  });
});

page.remove.addEventListener('click', () => void deleteUser());

async function deleteUser(): Promise<void> {
  if (shown === undefined) return;
  if (!confirmingDelete) {
    resetEditor();
    confirmingDelete = true;
    page.remove.textContent = 'Confirm delete';
    page.editStatus.textContent = `Press “Confirm delete” to delete ${shown.user.NAME}.`;
    return;
  }
  confirmingDelete = false;
  page.remove.textContent = 'Delete user';
  page.editStatus.textContent = 'Deleting…';
  const response = await writeUser('DELETE');
  page.editStatus.textContent = '';
  if (!response.ok) return explainFailure(response, 'deleted');
  const name = shown.user.NAME;
  shown = undefined;
  page.message.textContent = `Deleted ${name}.`;
  navigate({ ...view, user: '' });
  await show({ reload: true });
  page.table.focus();
}

void show();
