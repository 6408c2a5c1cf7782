import { USER_FIELDS, type RawUser, type UserField } from '../users/user.js';

/**
 * One record read from an import file: either the five raw fields, or a problem that makes the
 * record unusable (wrong field count, not an object). `location` names it for the error report:
 * `line N` (CSV physical line, header = 1) or `item N` (JSON array index / NDJSON line, from 1).
 */
export type SourceRecord =
  { location: string; raw: RawUser } | { location: string; problem: string };

const FIELD_BY_KEY = new Map<string, UserField>(USER_FIELDS.map((field) => [field, field]));

/** Maps a parsed JSON value to a record: an object with exactly the five keys, string values. */
export function recordFromJsonValue(value: unknown, location: string): SourceRecord {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return notAUserObject(location);
  }
  return recordFromJsonEntries(Object.entries(value), location);
}

/** The record for a JSON item that is not an object. */
export function notAUserObject(location: string): SourceRecord {
  return { location, problem: `expected an object with keys ${USER_FIELDS.join(', ')}` };
}

/** Maps the key/value pairs of a JSON object, in order, to a record (see recordFromJsonValue). */
export function recordFromJsonEntries(
  entries: Iterable<readonly [string, unknown]>,
  location: string,
): SourceRecord {
  const raw: Partial<RawUser> = {};
  const problems: string[] = [];
  for (const [key, fieldValue] of entries) {
    const field = FIELD_BY_KEY.get(key.trim().toUpperCase());
    if (field === undefined) {
      problems.push(`unknown key ${JSON.stringify(key)}`);
    } else if (raw[field] !== undefined) {
      problems.push(`${field}: given twice`);
    } else if (typeof fieldValue !== 'string') {
      problems.push(`${field}: must be a string`);
    } else {
      raw[field] = fieldValue;
    }
  }
  for (const field of USER_FIELDS) {
    if (!(field in raw) && !problems.some((problem) => problem.startsWith(`${field}:`))) {
      problems.push(`${field}: missing`);
    }
  }
  if (problems.length > 0) return { location, problem: problems.join('; ') };
  return { location, raw: raw as RawUser };
}
