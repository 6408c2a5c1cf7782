/** What a `Range` header asks of a body of known length (RFC 9110 §14). */
export type RangeRequest =
  /** No range to honour: answer 200 with the whole body (absent, malformed, several, not bytes). */
  | { kind: 'whole' }
  /** One satisfiable range: answer 206 with bytes `start`..`end` (inclusive). */
  | { kind: 'part'; start: number; end: number }
  /** Well-formed but nothing in it lies within the body: answer 416. */
  | { kind: 'unsatisfiable' };

const WHOLE: RangeRequest = { kind: 'whole' };
const RANGE_SPEC = /^(\d*)-(\d*)$/;

/**
 * Reads a `Range` header against a body of `length` bytes. A server may ignore Range (§14.2), so
 * anything this does not serve as one part — a malformed header, another unit, several ranges
 * (multipart/byteranges is not worth its cost for a JSON array) — is the whole body; a
 * well-formed set of ranges none of which overlaps the body is 416 (§15.5.17).
 * @see https://www.rfc-editor.org/rfc/rfc9110#section-14.2
 */
export function parseRange(header: string | undefined, length: number): RangeRequest {
  if (header === undefined) return WHOLE;
  const match = /^\s*bytes\s*=\s*(.*)$/i.exec(header);
  if (match === null) return WHOLE;
  const specs = match[1]!
    .split(',')
    .map((spec) => spec.trim())
    .filter((spec) => spec !== '');
  if (specs.length === 0) return WHOLE;
  const parts: ({ start: number; end: number } | undefined)[] = [];
  for (const spec of specs) {
    const parsed = RANGE_SPEC.exec(spec);
    if (parsed === null) return WHOLE;
    const [, first = '', last = ''] = parsed;
    if (first === '' && last === '') return WHOLE;
    if (first === '') {
      // Suffix: the last N bytes; N = 0 selects nothing.
      const suffix = Number(last);
      if (!Number.isSafeInteger(suffix)) return WHOLE;
      parts.push(
        suffix === 0 || length === 0
          ? undefined
          : { start: Math.max(0, length - suffix), end: length - 1 },
      );
      continue;
    }
    const start = Number(first);
    const end = last === '' ? length - 1 : Number(last);
    if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end)) return WHOLE;
    if (last !== '' && end < start) return WHOLE;
    parts.push(start >= length ? undefined : { start, end: Math.min(end, length - 1) });
  }
  const satisfiable = parts.filter((part) => part !== undefined);
  if (satisfiable.length === 0) return { kind: 'unsatisfiable' };
  if (specs.length > 1) return WHOLE;
  return { kind: 'part', ...satisfiable[0]! };
}

/**
 * `If-Range` (§13.1.5): the range is served only when the validator is the current strong ETag
 * (a date never matches: this body has no Last-Modified).
 */
export function ifRangeAllows(ifRange: string | undefined, etag: string): boolean {
  return ifRange === undefined || ifRange.trim() === etag;
}
