import type { User } from '../../src/users/user.js';

/**
 * A CSV whose values need every kind of JSON escaping (quotes, backslash, control characters,
 * U+2028, `</script>`) and carry non-ASCII and astral characters: for tests that check the
 * /api body is exactly the contract's JSON. Its header row is included; 3 users.
 */
export const TRICKY_USERS_CSV = [
  'NAME,STREET,CITY,STATE,USER_DATE',
  `"Ann ""The Quote"" O'Neil","1 Back\\slash St","Tab\tTown",ny,01/02/03`,
  '"Line\nBreak","Ctrl\u0001Char","Zoë 😀 \u2028 Śródmieście",CA,29/02/24',
  '"<script>/x</script>","\u007fDel","Comma, City",TX,31/12/99',
].join('\r\n');

/** The city of the second tricky user, as /api must show it. */
export const TRICKY_CITY = 'Zoë 😀 \u2028 Śródmieście';

/** A stored user as the bare /api shows it: these keys, in this order. */
export function contractOf(user: User) {
  return {
    NAME: user.name,
    STREET: user.street,
    CITY: user.city,
    STATE: user.state,
    USER_DATE: user.userDate,
  };
}
