import type { RawUser, User, UserField } from './user.js';

/** The 50 states, DC, and the inhabited territories plus the minor outlying islands (USPS codes). */
const US_STATE_CODES = new Set(
  (
    'AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ ' +
    'NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC AS GU MP PR VI UM'
  ).split(' '),
);

const MAX_TEXT_LENGTH = 255;
const DATE_PATTERN = /^(\d{2})\/(\d{2})\/(\d{2})$/;
const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

export interface FieldProblem {
  field: UserField;
  reason: string;
}

export type UserValidation = { ok: true; user: User } | { ok: false; problems: FieldProblem[] };

/**
 * Checks one raw record. Values are trimmed of surrounding whitespace and otherwise kept
 * exactly; STATE is upper-cased. Every problem of the record is reported, not just the first.
 */
export function validateUser(raw: RawUser): UserValidation {
  const problems: FieldProblem[] = [];
  const name = checkText('NAME', raw.NAME, problems);
  const street = checkText('STREET', raw.STREET, problems);
  const city = checkText('CITY', raw.CITY, problems);

  const state = raw.STATE.trim().toUpperCase();
  if (!US_STATE_CODES.has(state)) {
    problems.push({
      field: 'STATE',
      reason: `${quote(raw.STATE)} is not a US state, DC or territory code (e.g. NY)`,
    });
  }

  const userDate = raw.USER_DATE.trim();
  const dateProblem = checkDate(userDate);
  if (dateProblem !== undefined) problems.push({ field: 'USER_DATE', reason: dateProblem });

  if (problems.length > 0) return { ok: false, problems };
  return { ok: true, user: { name, street, city, state, userDate } };
}

function checkText(field: UserField, value: string, problems: FieldProblem[]): string {
  const text = value.trim();
  if (text === '') {
    problems.push({ field, reason: 'must not be empty' });
  } else if (text.length > MAX_TEXT_LENGTH && [...text].length > MAX_TEXT_LENGTH) {
    // UTF-16 length is an upper bound of the character count, so most values skip the spread.
    problems.push({ field, reason: `longer than ${MAX_TEXT_LENGTH} characters` });
  }
  return text;
}

/**
 * `dd/mm/yy`, a real calendar date. The two-digit year has no century, so 29/02 is valid
 * exactly when yy is divisible by 4 (00 included): every such year is a leap year in some
 * century of the window a two-digit year can mean.
 */
function checkDate(value: string): string | undefined {
  const match = DATE_PATTERN.exec(value);
  if (match === null) return `${quote(value)} is not a date in dd/mm/yy form`;
  const day = Number(match[1]);
  const month = Number(match[2]);
  const year = Number(match[3]);
  if (month < 1 || month > 12) return `${quote(value)} has no month ${match[2]}`;
  const lastDay = month === 2 && year % 4 !== 0 ? 28 : DAYS_IN_MONTH[month - 1]!;
  if (day < 1 || day > lastDay) return `${quote(value)} is not a calendar date`;
  return undefined;
}

function quote(value: string): string {
  const shown = value.length > 40 ? `${value.slice(0, 40)}…` : value;
  return JSON.stringify(shown);
}
