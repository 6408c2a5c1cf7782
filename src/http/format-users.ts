import type { User } from '../users/user.js';

/** The public column names a response may carry: the seed's five and, on request, ID. */
export const PUBLIC_COLUMNS = ['ID', 'NAME', 'STREET', 'CITY', 'STATE', 'USER_DATE'] as const;
export type PublicColumn = (typeof PUBLIC_COLUMNS)[number];

/** The bare `/api` columns, in the contract's order. */
export const DEFAULT_COLUMNS: readonly PublicColumn[] = [
  'NAME',
  'STREET',
  'CITY',
  'STATE',
  'USER_DATE',
];

/** The formats `/api` answers in (by `Accept`, or `?format=`). */
export const USERS_FORMATS = ['json', 'ndjson', 'csv'] as const;
export type UsersFormat = (typeof USERS_FORMATS)[number];

/**
 * How CSV cells are written. `plain`: RFC 4180, the import format, loads back unchanged.
 * `spreadsheet`: for opening in a spreadsheet, where a cell starting with = + - @ (or TAB, CR)
 * runs as a formula: such a cell gets a leading `'`, every cell is quoted, and a BOM tells the
 * spreadsheet the text is UTF-8 (OWASP's CSV injection guidance). Not for re-import.
 * @see https://owasp.org/www-community/attacks/CSV_Injection
 */
export const CSV_PROFILES = ['plain', 'spreadsheet'] as const;
export type CsvProfile = (typeof CSV_PROFILES)[number];

export const MEDIA_TYPES: Record<UsersFormat, string> = {
  json: 'application/json; charset=utf-8',
  ndjson: 'application/x-ndjson; charset=utf-8',
  csv: 'text/csv; charset=utf-8',
};

type Row = User & { id?: number };

const VALUE_OF: Record<PublicColumn, (user: Row) => string | number> = {
  ID: (user) => user.id ?? 0,
  NAME: (user) => user.name,
  STREET: (user) => user.street,
  CITY: (user) => user.city,
  STATE: (user) => user.state,
  USER_DATE: (user) => user.userDate,
};

/** RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled. */
function csvField(value: string | number): string {
  const text = String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** A cell a spreadsheet would run as a formula: its first character. */
const FORMULA_START = /^[=+\-@\t\r]/;

/** The `spreadsheet` profile's cell: always quoted, a formula-looking one shown as text. */
function spreadsheetField(value: string | number): string {
  const text = String(value);
  const shown = FORMULA_START.test(text) ? `'${text}` : text;
  return `"${shown.replaceAll('"', '""')}"`;
}

/** Writes users as text in one of the formats, page by page; the pages concatenate. */
export interface UsersWriter {
  /** The text before the first row. */
  readonly head: string;
  /** The rows of one page; `first` is true for the page that holds the first row. */
  rows(users: readonly Row[], first: boolean): string;
  /** The text after the last row. */
  readonly tail: string;
}

/**
 * JSON: an array of objects whose keys are `columns` in that order, values strings (ID a
 * number). NDJSON: one such object per line. CSV: a header row, then one line per user with
 * CRLF line ends, cells written as `csvProfile` says: `plain` with the five default columns is
 * the import format and loads back as is.
 */
export function createUsersWriter(
  format: UsersFormat,
  columns: readonly PublicColumn[] = DEFAULT_COLUMNS,
  csvProfile: CsvProfile = 'plain',
): UsersWriter {
  const getters = columns.map((column) => VALUE_OF[column]);
  if (format === 'csv') {
    const spreadsheet = csvProfile === 'spreadsheet';
    const field = spreadsheet ? spreadsheetField : csvField;
    return {
      head: `${spreadsheet ? '\uFEFF' : ''}${columns.join(',')}\r\n`,
      rows(users) {
        return users
          .map((user) => `${getters.map((get) => field(get(user))).join(',')}\r\n`)
          .join('');
      },
      tail: '',
    };
  }
  // Plain objects with the keys in order, written by JSON.stringify a page at a time: V8's
  // serialiser builds one flat string, which encodes to UTF-8 several times faster than a
  // string concatenated from thousands of pieces.
  const toObject = (user: Row): Record<string, string | number> => {
    const object: Record<string, string | number> = {};
    for (let index = 0; index < columns.length; index++) {
      object[columns[index]!] = getters[index]!(user);
    }
    return object;
  };
  const toPublic = columns === DEFAULT_COLUMNS ? toDefaultObject : toObject;
  if (format === 'ndjson') {
    return {
      head: '',
      rows(users) {
        return users.map((user) => `${JSON.stringify(toPublic(user))}\n`).join('');
      },
      tail: '',
    };
  }
  return {
    head: '[',
    rows(users, first) {
      if (users.length === 0) return '';
      const objects = JSON.stringify(users.map(toPublic));
      return (first ? '' : ',') + objects.slice(1, -1);
    },
    tail: ']',
  };
}

/** The bare contract's object, as a literal: one hidden class, the fastest to serialise. */
export function toDefaultObject(user: Row) {
  return {
    NAME: user.name,
    STREET: user.street,
    CITY: user.city,
    STATE: user.state,
    USER_DATE: user.userDate,
  };
}

/** A stored user as `/api/users/:id` shows it: ID, then the bare contract's keys. */
export function toApiUserWithId(user: User & { id: number }) {
  return { ID: user.id, ...toDefaultObject(user) };
}
