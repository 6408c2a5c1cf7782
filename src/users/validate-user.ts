import type { RawUser, User, UserField } from './user.js';

/** The 50 states, DC, and the inhabited territories plus the minor outlying islands (USPS codes). */
const US_STATE_CODES = new Set(
  (
    'AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ ' +
    'NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC AS GU MP PR VI UM'
  ).split(' '),
);

const MAX_TEXT_LENGTH = 255;
const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

export interface FieldProblem {
  field: UserField;
  reason: string;
}

export type UserValidation = { ok: true; user: User } | { ok: false; problems: FieldProblem[] };

/**
 * Checks one raw record. Values are trimmed of surrounding whitespace and otherwise kept
 * exactly; STATE is upper-cased. Every problem of the record is reported, not just the first.
 * A good record allocates nothing but its user: imports call this once per row.
 */
export function validateUser(raw: RawUser): UserValidation {
  const name = raw.NAME.trim();
  const street = raw.STREET.trim();
  const city = raw.CITY.trim();
  const state = raw.STATE.trim().toUpperCase();
  const userDate = raw.USER_DATE.trim();
  const nameProblem = textProblem(name);
  const streetProblem = textProblem(street);
  const cityProblem = textProblem(city);
  const knownState = US_STATE_CODES.has(state);
  const dateProblem = dateProblemOf(userDate);
  if (
    nameProblem === undefined &&
    streetProblem === undefined &&
    cityProblem === undefined &&
    knownState &&
    dateProblem === undefined
  ) {
    return { ok: true, user: { name, street, city, state, userDate } };
  }
  const problems: FieldProblem[] = [];
  if (nameProblem !== undefined) problems.push({ field: 'NAME', reason: nameProblem });
  if (streetProblem !== undefined) problems.push({ field: 'STREET', reason: streetProblem });
  if (cityProblem !== undefined) problems.push({ field: 'CITY', reason: cityProblem });
  if (!knownState) {
    problems.push({
      field: 'STATE',
      reason: `${quote(raw.STATE)} is not a US state, DC or territory code (e.g. NY)`,
    });
  }
  if (dateProblem !== undefined) problems.push({ field: 'USER_DATE', reason: dateProblem });
  return { ok: false, problems };
}

function textProblem(text: string): string | undefined {
  if (text === '') return 'must not be empty';
  // UTF-16 length is an upper bound of the character count, so most values skip the spread.
  if (text.length > MAX_TEXT_LENGTH && [...text].length > MAX_TEXT_LENGTH) {
    return `longer than ${MAX_TEXT_LENGTH} characters`;
  }
  for (let index = 0; index < text.length; index += 1) {
    const code = text.charCodeAt(index);
    if (isControl(code)) {
      const codePoint = `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
      const position = [...text.slice(0, index)].length + 1;
      return `contains the control character ${codePoint} at character ${position}`;
    }
  }
  return undefined;
}

/**
 * Unicode's control characters (C0, DEL, C1), TAB and line breaks included: no name, street or
 * city needs one, and they are what breaks a terminal, a log line, a spreadsheet cell or (NUL)
 * SQLite's text matching. Surrounding whitespace is trimmed before this check.
 */
function isControl(code: number): boolean {
  return code < 0x20 || (code >= 0x7f && code <= 0x9f);
}

/**
 * `dd/mm/yy`, a real calendar date. The two-digit year has no century, so 29/02 is valid
 * exactly when yy is divisible by 4 (00 included): every such year is a leap year in some
 * century of the window a two-digit year can mean.
 */
function dateProblemOf(value: string): string | undefined {
  // Read by character code: a regular expression and its match array per row cost more here
  // than all the other checks of a row together.
  if (
    value.length !== 8 ||
    value.charCodeAt(2) !== SLASH ||
    value.charCodeAt(5) !== SLASH ||
    !isDigit(value, 0) ||
    !isDigit(value, 1) ||
    !isDigit(value, 3) ||
    !isDigit(value, 4) ||
    !isDigit(value, 6) ||
    !isDigit(value, 7)
  ) {
    return `${quote(value)} is not a date in dd/mm/yy form`;
  }
  const day = twoDigits(value, 0);
  const month = twoDigits(value, 3);
  const year = twoDigits(value, 6);
  if (month < 1 || month > 12) return `${quote(value)} has no month ${value.slice(3, 5)}`;
  const lastDay = month === 2 && year % 4 !== 0 ? 28 : DAYS_IN_MONTH[month - 1]!;
  if (day < 1 || day > lastDay) return `${quote(value)} is not a calendar date`;
  return undefined;
}

const SLASH = 0x2f;

function isDigit(value: string, at: number): boolean {
  const code = value.charCodeAt(at);
  return code >= 0x30 && code <= 0x39;
}

function twoDigits(value: string, at: number): number {
  return (value.charCodeAt(at) - 0x30) * 10 + (value.charCodeAt(at + 1) - 0x30);
}

function quote(value: string): string {
  const shown = value.length > 40 ? `${value.slice(0, 40)}…` : value;
  return JSON.stringify(shown);
}
