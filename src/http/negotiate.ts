import type { ContentEncoding } from './api-cache.js';
import type { UsersFormat } from './format-users.js';

/**
 * Clients send a handful of distinct header values (one per browser, library or tool), so each
 * answer is kept for its header text; the maps are emptied when full, bounding memory.
 */
const REMEMBERED_HEADERS = 256;
const formats = new Map<string, UsersFormat>();
const encodings = new Map<string, ContentEncoding | undefined>();

function remembered<T>(
  answers: Map<string, T>,
  header: string,
  negotiate: (header: string) => T,
): T {
  if (answers.has(header)) return answers.get(header) as T;
  if (answers.size >= REMEMBERED_HEADERS) answers.clear();
  const answer = negotiate(header);
  answers.set(header, answer);
  return answer;
}

interface Range {
  value: string;
  quality: number;
}

function parseRanges(header: string): Range[] {
  return header.split(',').flatMap((part) => {
    const [value = '', ...params] = part.split(';').map((piece) => piece.trim().toLowerCase());
    if (value === '') return [];
    const q = params.find((param) => param.startsWith('q='));
    const quality = q === undefined ? 1 : Number(q.slice(2));
    return [{ value, quality: Number.isFinite(quality) ? quality : 0 }];
  });
}

const FORMAT_TYPES: [UsersFormat, string][] = [
  ['json', 'application/json'],
  ['ndjson', 'application/x-ndjson'],
  ['csv', 'text/csv'],
];

/**
 * The users format an `Accept` header prefers: JSON, NDJSON or CSV, by quality and then in that
 * order. JSON when the header names none of them (a browser's `text/html,…`, or no header):
 * the bare `/api` contract is JSON whatever the client sends.
 */
export function negotiateFormat(accept: string | undefined): UsersFormat {
  if (accept === undefined || accept === '') return 'json';
  return remembered(formats, accept, formatOf);
}

function formatOf(accept: string): UsersFormat {
  const ranges = parseRanges(accept);
  let best: UsersFormat = 'json';
  let bestQuality = 0;
  for (const [format, type] of FORMAT_TYPES) {
    const [major] = type.split('/');
    // The most specific range decides (RFC 9110 §12.5.1).
    const match =
      ranges.find((range) => range.value === type) ??
      ranges.find((range) => range.value === `${major}/*`) ??
      ranges.find((range) => range.value === '*/*');
    if (match !== undefined && match.quality > bestQuality) {
      best = format;
      bestQuality = match.quality;
    }
  }
  return best;
}

/** br, then gzip, when `Accept-Encoding` allows them; undefined: send it uncompressed. */
export function negotiateEncoding(acceptEncoding: string | undefined): ContentEncoding | undefined {
  if (acceptEncoding === undefined || acceptEncoding === '') return undefined;
  return remembered(encodings, acceptEncoding, encodingOf);
}

function encodingOf(acceptEncoding: string): ContentEncoding | undefined {
  const ranges = parseRanges(acceptEncoding);
  const quality = (name: string) =>
    (ranges.find((range) => range.value === name) ?? ranges.find((range) => range.value === '*'))
      ?.quality ?? 0;
  if (quality('br') > 0) return 'br';
  if (quality('gzip') > 0) return 'gzip';
  return undefined;
}

const preferences = new Map<string, readonly ContentEncoding[]>();

/**
 * The encodings `Accept-Encoding` allows, best first (br, then gzip): a body that cannot be sent
 * in the first (page files have no br copy) takes the next; none left means uncompressed.
 */
export function acceptedEncodings(acceptEncoding: string | undefined): readonly ContentEncoding[] {
  if (acceptEncoding === undefined || acceptEncoding === '') return [];
  return remembered(preferences, acceptEncoding, (header) => {
    const ranges = parseRanges(header);
    const accepts = (name: string) =>
      ((ranges.find((range) => range.value === name) ?? ranges.find((range) => range.value === '*'))
        ?.quality ?? 0) > 0;
    return (['br', 'gzip'] as const).filter(accepts);
  });
}

/**
 * Whether `Accept` names `text/html` itself, with a quality above zero and at least that of
 * `application/json`: a browser's navigation does; `curl`, fetch() and API clients (no header,
 * `*\/*`, JSON) do not, and keep the API's answer.
 */
export function prefersHtml(accept: string | undefined): boolean {
  if (accept === undefined || !accept.includes('text/html')) return false;
  const ranges = parseRanges(accept);
  const quality = (type: string) => ranges.find((range) => range.value === type)?.quality ?? 0;
  const html = quality('text/html');
  return html > 0 && html >= quality('application/json');
}
