import type { Database } from '../../src/db/database.js';
import type { User } from '../../src/users/user.js';

/**
 * Users whose values need every kind of JSON escaping (quotes, backslash, control characters,
 * U+2028, `</script>`) and carry non-ASCII and astral characters: for tests that check the
 * /api body is exactly the contract's JSON. 3 users.
 */
export const TRICKY_USERS: readonly User[] = [
  {
    name: `Ann "The Quote" O'Neil`,
    street: '1 Back\\slash St',
    city: 'Tab\tTown',
    state: 'NY',
    userDate: '01/02/03',
  },
  {
    name: 'Line\nBreak',
    street: 'Ctrl\u0001Char',
    city: 'Zoë 😀 \u2028 Śródmieście',
    state: 'CA',
    userDate: '29/02/24',
  },
  {
    name: '<script>/x</script>',
    street: '\u007fDel',
    city: 'Comma, City',
    state: 'TX',
    userDate: '31/12/99',
  },
];

/** The city of the second tricky user, as /api must show it. */
export const TRICKY_CITY = 'Zoë 😀 \u2028 Śródmieście';

/**
 * Makes the tricky users the whole table. Imports refuse control characters, so they are
 * stored directly: a table loaded before that rule may hold them, and /api must still escape
 * them exactly.
 */
export async function storeTrickyUsers(db: Database): Promise<void> {
  await db.replaceUsersTable((insert) => insert(TRICKY_USERS), {
    ifEmpty: false,
    keepPrevious: false,
  });
}

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
