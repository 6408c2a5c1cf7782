/**
 * Where each user's JSON object lies in a rendered page of the bare `/api` body, by id: what
 * lets a single-user write change its row in the page's bytes instead of rendering the page's
 * 2,000 rows again (a tenth of the work; docs/design-notes.md, "Bare /api as pages").
 */
export interface PageRows {
  /** The page's user ids, ascending (the body's order). */
  ids: readonly number[];
  /** The byte offset where each user's object starts, in the same order. */
  starts: readonly number[];
}

/**
 * Every object in a page starts `{"NAME":` (users-json.ts renders the keys in the contract's
 * order), and inside a JSON string a `"` is always escaped: so `,{"NAME":` occurs exactly where
 * one object ends and the next begins.
 */
const ROW_BOUNDARY = Buffer.from(',{"NAME":');

/**
 * The rows of `bytes` (a page as rendered: objects joined by commas, no brackets) given its ids
 * in order. Throws when the objects found are not one per id: the page is then rendered whole.
 */
export function indexPageRows(bytes: Buffer, ids: readonly number[]): PageRows {
  const starts = rowStarts(bytes);
  if (starts.length !== ids.length) {
    throw new Error(`a page of ${ids.length} users holds ${starts.length} objects`);
  }
  return { ids, starts };
}

/** Where each object of a rendered page starts. */
export function rowStarts(bytes: Buffer): number[] {
  const starts: number[] = [];
  if (bytes.length > 0) starts.push(0);
  for (let at = bytes.indexOf(ROW_BOUNDARY); at !== -1; at = bytes.indexOf(ROW_BOUNDARY, at + 1)) {
    starts.push(at + 1);
  }
  return starts;
}

/**
 * The ids a page of `count` objects held before a change to the `changed` ids, given the ids
 * it holds now: an id not changed was there then as now, so what is unknown is which changed
 * ids were there. When none or all of them were, `count` tells (always, for one changed id);
 * else undefined (the page is then rendered whole).
 */
export function idsBefore(
  now: readonly number[],
  changed: ReadonlySet<number>,
  count: number,
): number[] | undefined {
  const kept = now.filter((id) => !changed.has(id));
  if (count === kept.length) return kept;
  if (count !== kept.length + changed.size) return undefined;
  return [...kept, ...changed].sort((a, b) => a - b);
}

/**
 * The page with each changed user's object put in its place: `changed` maps an id to its new
 * object, or to undefined for a user that no longer exists. Unchanged rows are copied in runs,
 * so a change costs a copy of the page, not a render of it.
 */
export function spliceRows(
  bytes: Buffer,
  rows: PageRows,
  changed: ReadonlyMap<number, Buffer | undefined>,
): { bytes: Buffer; rows: PageRows } {
  const count = rows.ids.length;
  const endOf = (index: number) => (index + 1 < count ? rows.starts[index + 1]! - 1 : bytes.length);
  const parts: Buffer[] = [];
  const ids: number[] = [];
  const starts: number[] = [];
  let length = 0;
  const separate = () => {
    if (ids.length === 0) return;
    parts.push(COMMA);
    length += 1;
  };
  /** Rows [from, to) of the old page, as one copy. */
  const copyRun = (from: number, to: number) => {
    if (from >= to) return;
    separate();
    const shift = length - rows.starts[from]!;
    for (let index = from; index < to; index += 1) {
      ids.push(rows.ids[index]!);
      starts.push(rows.starts[index]! + shift);
    }
    const run = bytes.subarray(rows.starts[from], endOf(to - 1));
    parts.push(run);
    length += run.length;
  };
  let next = 0;
  for (const id of [...changed.keys()].sort((a, b) => a - b)) {
    const at = firstAtLeast(rows.ids, id, next);
    copyRun(next, at);
    next = rows.ids[at] === id ? at + 1 : at;
    const object = changed.get(id);
    if (object === undefined) continue;
    separate();
    ids.push(id);
    starts.push(length);
    parts.push(object);
    length += object.length;
  }
  copyRun(next, count);
  return { bytes: Buffer.concat(parts, length), rows: { ids, starts } };
}

const COMMA = Buffer.from(',');

/** The first index at or after `from` whose id is at least `id` (ids ascending). */
function firstAtLeast(ids: readonly number[], id: number, from: number): number {
  let low = from;
  let high = ids.length;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (ids[middle]! < id) low = middle + 1;
    else high = middle;
  }
  return low;
}
