/** The five fields of a user, in the order the public JSON and the CSV format use. */
export const USER_FIELDS = ['NAME', 'STREET', 'CITY', 'STATE', 'USER_DATE'] as const;

export type UserField = (typeof USER_FIELDS)[number];

/** A validated user. USER_DATE stays `dd/mm/yy` text, exactly as loaded. */
export interface User {
  name: string;
  street: string;
  city: string;
  state: string;
  userDate: string;
}

/** One record as read from a file, before validation: every field as text. */
export type RawUser = Record<UserField, string>;
