import type { Config } from '../config/config.js';
import type { Database } from '../db/database.js';
import { migrateToLatest } from '../db/migrate-to-latest.js';
import { openDatabase } from '../db/open-database.js';
import { AppError } from '../errors.js';

/**
 * Whether a command may create a missing database, and what to tell the user when it may not.
 * Only `serve`, `migrate` and commands given `--create` create one: a typo in DATABASE_URL
 * must fail, not leave a new empty database behind.
 */
export interface CreateDatabase {
  create: boolean;
  /** Appended to "database not found: PATH; nothing was created". */
  hint: string;
}

/** For commands without `--create` (count, backup). */
export const NO_CREATE_OPTION: CreateDatabase = {
  create: false,
  hint: 'users-api migrate creates an empty one',
};

/** The help text of `--create` (import and restore). */
export const CREATE_HELP =
  'create the SQLite database (and its folder) if it does not exist; without it a missing one is refused';

/** For commands with `--create`, from their parsed options. */
export function createOption(options: { create?: true }): CreateDatabase {
  return { create: options.create === true, hint: 'pass --create to create it' };
}

/** Opens and migrates the configured database for `use`, then closes it. */
export async function withDatabase(
  config: Config,
  { create, hint }: CreateDatabase,
  use: (db: Database) => Promise<void>,
): Promise<void> {
  let db: Database;
  try {
    db = openDatabase(config.database, { create });
  } catch (error) {
    if (error instanceof AppError && error.code === 'ERR_DB_NOT_FOUND') {
      throw new AppError(error.code, `${error.message} (${hint})`, { cause: error });
    }
    throw error;
  }
  try {
    await migrateToLatest(db);
    await use(db);
  } finally {
    await db.close();
  }
}
