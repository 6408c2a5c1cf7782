import assert from 'node:assert/strict';
import { it, type TestContext } from 'node:test';
import { sql } from 'kysely';
import { beginWriteTransaction } from '../../src/db/begin-write-transaction.js';
import type { Database } from '../../src/db/database.js';
import {
  countMatchingUsers,
  findUsers,
  insertUsers,
  listUsers,
  readDataVersion,
  readUsersJsonPage,
  type UserRecord,
  type UsersFilter,
  type UsersQuery,
  type UsersSortKey,
} from '../../src/db/users-repository.js';
import {
  deleteExpiredIdempotencyRecords,
  findIdempotencyRecord,
  insertIdempotencyRecord,
} from '../../src/db/idempotency-keys-repository.js';
import type { User } from '../../src/users/user.js';
import { contractOf, TRICKY_USERS } from './tricky-users.js';

/**
 * The repository tests, written once and registered on every dialect, as kysely runs one suite
 * over each of its dialects: SQLite in test/integration, the real MariaDB pair in test/mysql.
 * Each test gets a fresh, migrated, empty database from `open` and checks the same things.
 * Expected results come from the users the test stored, computed here, never from the database.
 */
export interface RepositorySuiteTarget {
  dialect: Database['dialect'];
  /** A migrated, empty database, closed when the test ends. */
  open: (t: TestContext) => Promise<Database>;
}

const SORT_KEYS: readonly UsersSortKey[] = ['id', 'name', 'city', 'state', 'userDate'];

/** Text order as both dialects' binary collations define it: Unicode code points (UTF-8 bytes). */
function compareText(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** `dd/mm/yy` as `yymmdd`: USER_DATE sorts as a date. */
function dateKey(userDate: string): string {
  return userDate.slice(6, 8) + userDate.slice(3, 5) + userDate.slice(0, 2);
}

/** `records` in the order findUsers promises: by the key, ties by id, both in one direction. */
function sortedRecords(records: readonly UserRecord[], query: UsersQuery): UserRecord[] {
  const key = (record: UserRecord): string | number => {
    switch (query.sort) {
      case 'id':
        return record.id;
      case 'userDate':
        return dateKey(record.userDate);
      case 'name':
      case 'city':
      case 'state':
        return record[query.sort];
    }
  };
  const sign = query.descending ? -1 : 1;
  return [...records].sort((a, b) => {
    const [x, y] = [key(a), key(b)];
    const byKey = typeof x === 'number' ? x - (y as number) : compareText(x, y as string);
    return sign * (byKey !== 0 ? byKey : a.id - b.id);
  });
}

/** The ignoring-case reference: both sides lower-cased by Unicode's rules, nothing else folded. */
const fold = (text: string) => text.toLowerCase();

function matchesFilter(user: User, filter: UsersFilter): boolean {
  const { state, city, namePrefix, contains } = filter;
  return (
    (state === undefined || user.state === state) &&
    (city === undefined || user.city === city) &&
    (namePrefix === undefined || fold(user.name).startsWith(fold(namePrefix))) &&
    (contains === undefined ||
      [user.name, user.street, user.city, user.state].some((value) =>
        fold(value).includes(fold(contains)),
      ))
  );
}

const userOf = ({ name, street, city, state, userDate }: User): User => ({
  name,
  street,
  city,
  state,
  userDate,
});

function chunksOf<T>(items: readonly T[], size: number): T[][] {
  const chunks: T[][] = [];
  for (let at = 0; at < items.length; at += size) chunks.push(items.slice(at, at + size));
  return chunks;
}

/** Replaces the table with `users`, handed over in batches of the dialect's size. */
async function replaceWith(
  db: Database,
  users: readonly User[],
  options = { ifEmpty: false, keepPrevious: false },
) {
  return db.replaceUsersTable(async (insert) => {
    for (const batch of chunksOf(users, db.maxInsertRows)) await insert(batch);
  }, options);
}

/** Appends each batch with one `db.insertUsers` call, in one write transaction, as imports do. */
async function appendBatches(db: Database, batches: readonly (readonly User[])[]): Promise<void> {
  await db.withWriteLock(async (locked) => {
    const trx = await beginWriteTransaction(db, locked);
    try {
      for (const batch of batches) await db.insertUsers(trx, batch);
      await trx.commit().execute();
    } catch (error) {
      await trx.rollback().execute();
      throw error;
    }
  });
  await db.waitForReplicas();
}

/** Every stored user with its id, in load order, read where the service reads. */
async function readAll(db: Database): Promise<UserRecord[]> {
  const { users } = await db.read((executor) =>
    findUsers(executor, { sort: 'id', descending: false }, 1_000_000),
  );
  return users;
}

/** Follows findUsers' keyset cursor page by page (bounded), returning every row seen. */
async function walkPages(db: Database, query: UsersQuery, pageRows: number): Promise<UserRecord[]> {
  const seen: UserRecord[] = [];
  let after = query.after;
  for (let pages = 0; pages < 1000; pages += 1) {
    const page = await db.read((executor) => findUsers(executor, { ...query, after }, pageRows));
    seen.push(...page.users);
    if (page.users.length < pageRows || page.last === undefined) return seen;
    after = page.last;
  }
  throw new Error(`more than 1000 pages of ${pageRows} rows`);
}

/** The users tables that exist (users, users_prev, users_staging, users_replaced). */
async function usersTables(db: Database): Promise<string[]> {
  const tables = await db.write.introspection.getTables();
  return tables
    .map((table) => table.name)
    .filter((name) => name.startsWith('users'))
    .sort();
}

/** The columns `users` has secondary indexes on (users-table tests check their names). */
async function indexedColumns(db: Database): Promise<string[]> {
  const { rows } =
    db.dialect === 'sqlite'
      ? await sql<{ column: string }>`
          select ii.name as "column" from pragma_index_list('users') as il,
            pragma_index_info(il.name) as ii
          where il.origin = 'c'`.execute(db.write)
      : await sql<{ column: string }>`
          select column_name as "column" from information_schema.statistics
          where table_schema = database() and table_name = 'users' and index_name <> 'PRIMARY'`.execute(
          db.write,
        );
  return rows.map((row) => row.column).sort();
}

const NAMES = [
  'Ann Lee',
  'ann lee',
  'Ann',
  'Anna',
  'Ann B',
  'Élodie Brontë',
  'Zoë',
  'Zoe',
  'Ødegård',
  'Smiley 😀',
  'ｚ Fullwidth',
  'Bo',
  'Zz Last',
];
const CITIES = ['Zurmubku', 'Ikduju', 'zurmubku', 'Åsa', 'Ehazeru'];
const STATES = ['NY', 'KS', 'RI', 'CA'];
/** In text order these are not in date order: '01/01/00' is the earliest as text, not as date. */
const DATES = ['08/08/43', '16/09/86', '27/11/64', '01/01/00', '31/12/99', '29/02/24', '01/02/03'];

/** `count` users with every sort key repeated (ties), non-ASCII and astral names among them. */
function sortableUsers(count: number, tag = ''): User[] {
  return Array.from({ length: count }, (_, index) => ({
    name: NAMES[index % NAMES.length]!,
    street: `${index}${tag} Street`,
    city: CITIES[index % CITIES.length]!,
    state: STATES[index % STATES.length]!,
    userDate: DATES[index % DATES.length]!,
  }));
}

/** Users for text matching: case, accents, emoji, and the LIKE metacharacters `%`, `_`, `!`, `\`. */
const TEXT_USERS: readonly User[] = [
  ['Ann Lee', 'Hojzi Path', 'Zurmubku', 'NY'],
  ['ANNA BELL', 'Seime Plaza', 'Ikduju', 'KS'],
  ['Joann Smith', 'Main Street', 'Ehazeru', 'RI'],
  ['Élodie Fabre', 'Rue de la Paix', 'Zürich', 'CA'],
  ['élodie martin', 'Oak Road', 'Lyon', 'TX'],
  ['Zoë Ødegård', 'Ærø Vej', 'Åsa', 'WA'],
  ['Zoe Plain', 'Elm Road', 'Boston', 'MA'],
  ['Smiley 😀', 'Emoji Way', 'Austin', 'TX'],
  ['Cat 😺', 'Whisker Lane', 'Dallas', 'TX'],
  ['100% Real', 'Percent Path', 'Reno', 'NV'],
  ['Under_Score', 'Low Road', 'Provo', 'UT'],
  ['UnderXScore', 'High Road', 'Ogden', 'UT'],
  ['_Leading', 'First Road', 'Boise', 'ID'],
  ['Back\\slash', 'Slash\\Street', 'Salem', 'OR'],
  ['Bang!Name', 'Bang Road', 'Tulsa', 'OK'],
].map(([name, street, city, state]) => ({
  name: name!,
  street: street!,
  city: city!,
  state: state!,
  userDate: '01/01/01',
}));

/** Users whose JSON needs escapes of every kind, beyond the tricky ones of the /api tests. */
const MORE_TRICKY_USERS: readonly User[] = [
  {
    name: 'Solidus / Reverse \\ Quote " Apostrophe \'',
    street: 'C1 \u0085 Next Line \u009f',
    city: 'Paragraph\u2029Separator \ufeff BOM',
    state: 'NY',
    userDate: '01/01/01',
  },
  {
    name: 'Astral 𝄞 😀 and ｚ',
    street: 'Unit\u001fSeparator',
    city: 'Backslash-u \\u0041 literally',
    state: 'WA',
    userDate: '02/02/02',
  },
  {
    name: 'ü € 中文 Ελληνικά',
    street: 'Tab\tand\r\nCRLF',
    city: '\\"already escaped\\"',
    state: 'TX',
    userDate: '03/03/03',
  },
];

/** Exactly 255 characters (the column's limit), `filler` after a numbered prefix. */
function fullWidth(index: number, filler: string): string {
  const prefix = `${index} `;
  return prefix + filler.repeat(255 - [...prefix].length);
}

/** Why a test fails on a dialect today, for the tests where one does not keep the contract. */
type DialectGaps = Partial<Record<Database['dialect'], string>>;

export function registerRepositorySuite(target: RepositorySuiteTarget): void {
  const { open } = target;
  // A known gap runs as a TODO: its failure is printed, the run stays green. Delete the entry
  // once the dialect keeps the contract.
  const gap = (gaps: DialectGaps) => ({ todo: gaps[target.dialect] });

  async function seedSortable(t: TestContext): Promise<{ db: Database; all: UserRecord[] }> {
    const db = await open(t);
    const users = sortableUsers(100);
    // Half swapped in, half appended: the sorts must work on a staged table and the migrated one.
    await replaceWith(db, users.slice(0, 60));
    await appendBatches(db, [users.slice(60)]);
    const all = await readAll(db);
    assert.deepEqual(
      all.map((record) => record.id),
      users.map((_, index) => index + 1),
    );
    assert.deepEqual(all.map(userOf), users);
    return { db, all };
  }

  it('findUsers sorts by every key both ways, ties by id, across keyset pages', async (t) => {
    const { db, all } = await seedSortable(t);
    for (const sort of SORT_KEYS) {
      for (const descending of [false, true]) {
        const query: UsersQuery = { sort, descending };
        const expected = sortedRecords(all, query);
        const what = `${descending ? '-' : ''}${sort}`;
        // One page holding everything, then pages of 7 (tie groups span page boundaries).
        const whole = await db.read((executor) => findUsers(executor, query, 1000));
        assert.deepEqual(whole.users, expected, `${what}: one page`);
        assert.deepEqual(await walkPages(db, query, 7), expected, `${what}: pages of 7`);
        assert.deepEqual(await walkPages(db, query, 1), expected, `${what}: pages of 1`);
      }
    }
  });

  it('findUsers returns where a page starts and ends, nothing after the last row, and pages back', async (t) => {
    const { db, all } = await seedSortable(t);
    const query: UsersQuery = { sort: 'userDate', descending: false };
    const expected = sortedRecords(all, query);
    const page = await db.read((executor) => findUsers(executor, query, 10));
    assert.deepEqual(page.last, { key: dateKey(expected[9]!.userDate), id: expected[9]!.id });
    const last = expected.at(-1)!;
    const after = { key: dateKey(last.userDate), id: last.id };
    const beyond = await db.read((executor) => findUsers(executor, { ...query, after }, 10));
    assert.deepEqual(beyond, {
      users: [],
      first: undefined,
      last: undefined,
      moreBefore: undefined,
    });
    // Backward from the second page's first row: the first page, and nothing before it.
    const second = await db.read((executor) =>
      findUsers(executor, { ...query, after: page.last }, 10),
    );
    const back = await db.read((executor) =>
      findUsers(executor, { ...query, before: second.first }, 10),
    );
    assert.deepEqual(back.users, page.users);
    assert.deepEqual(back.first, { key: dateKey(expected[0]!.userDate), id: expected[0]!.id });
    assert.equal(back.moreBefore, false);
    const fromThird = await db.read((executor) =>
      findUsers(
        executor,
        { ...query, before: { key: dateKey(expected[20]!.userDate), id: expected[20]!.id } },
        10,
      ),
    );
    assert.deepEqual(fromThird.users, second.users);
    assert.equal(fromThird.moreBefore, true);
    const byId = await db.read((executor) =>
      findUsers(executor, { sort: 'id', descending: true }, 3),
    );
    assert.deepEqual(byId.last, { key: 98, id: 98 });
  });

  it('findUsers combines filters with a sort and its cursor', async (t) => {
    const { db, all } = await seedSortable(t);
    const queries: UsersQuery[] = [
      { sort: 'name', descending: true, state: 'NY' },
      { sort: 'city', descending: false, contains: 'ann' },
      { sort: 'userDate', descending: true, namePrefix: 'ann', city: 'Zurmubku' },
      { sort: 'state', descending: false, city: 'Åsa', namePrefix: 'z' },
    ];
    for (const query of queries) {
      const expected = sortedRecords(
        all.filter((user) => matchesFilter(user, query)),
        query,
      );
      assert.ok(expected.length > 3, `${JSON.stringify(query)} selects a few users`);
      assert.deepEqual(await walkPages(db, query, 3), expected, JSON.stringify(query));
    }
  });

  it('a findUsers cursor resumes at its position when users are added before and after it', async (t) => {
    const { db, all } = await seedSortable(t);
    const query: UsersQuery = { sort: 'name', descending: false };
    const first = await db.read((executor) => findUsers(executor, query, 30));
    const added = [
      { ...sortableUsers(1)[0]!, name: 'Aaa Before' },
      { ...sortableUsers(1)[0]!, name: 'Zzz After' },
      // Ties with the cursor's name: after it only by id, so it comes on a later page.
      { ...sortableUsers(1)[0]!, name: first.users.at(-1)!.name },
    ];
    await appendBatches(db, [added]);
    const rest = await walkPages(db, { ...query, after: first.last }, 30);
    const expected = sortedRecords(
      [...all, ...added.map((user, index) => ({ ...user, id: all.length + 1 + index }))],
      query,
    ).slice(30 + 1); // the 30 of the first page and 'Aaa Before', which sorts before them
    assert.deepEqual(rest, expected);
  });

  it('countMatchingUsers counts what findUsers finds, for every filter', async (t) => {
    const { db, all } = await seedSortable(t);
    const filters: UsersFilter[] = [
      {},
      { state: 'NY' },
      { state: 'ny' },
      { city: 'zurmubku' },
      { city: 'Zurmubku', state: 'KS' },
      { namePrefix: 'ANN' },
      { contains: 'street' },
      { contains: '7 st', state: 'RI' },
      { namePrefix: 'nobody' },
    ];
    for (const filter of filters) {
      const expected = all.filter((user) => matchesFilter(user, filter));
      const what = JSON.stringify(filter);
      assert.equal(
        await db.read((executor) => countMatchingUsers(executor, filter)),
        expected.length,
        what,
      );
      const found = await db.read((executor) =>
        findUsers(executor, { ...filter, sort: 'id', descending: false }, 1000),
      );
      assert.deepEqual(found.users, expected, what);
    }
  });

  /** Checks `q` (contains) and `name` (prefix) against the reference, found and counted. */
  async function assertTextMatches(
    db: Database,
    all: readonly UserRecord[],
    filters: readonly UsersFilter[],
  ): Promise<void> {
    const problems: string[] = [];
    for (const filter of filters) {
      const expected = all.filter((user) => matchesFilter(user, filter)).map((user) => user.name);
      const found = await db.read((executor) =>
        findUsers(executor, { ...filter, sort: 'id', descending: false }, 1000),
      );
      const count = await db.read((executor) => countMatchingUsers(executor, filter));
      const names = found.users.map((user) => user.name);
      if (JSON.stringify(names) !== JSON.stringify(expected) || count !== expected.length) {
        problems.push(
          `${JSON.stringify(filter)}: found ${JSON.stringify(names)} (count ${count}), expected ${JSON.stringify(expected)}`,
        );
      }
    }
    assert.deepEqual(problems, []);
  }

  async function seedText(t: TestContext) {
    const db = await open(t);
    await replaceWith(db, TEXT_USERS);
    const all = await readAll(db);
    assert.deepEqual(all.map(userOf), TEXT_USERS);
    return { db, all };
  }

  it('q and name ignore ASCII case, and take %, _, ! and backslash literally', async (t) => {
    const { db, all } = await seedText(t);
    await assertTextMatches(db, all, [
      { contains: 'ann' },
      { contains: 'ANN' },
      { contains: 'aNn' },
      { contains: 'path' },
      { contains: 'ny' },
      { contains: 'ut' },
      { contains: '%' },
      { contains: '100%' },
      { contains: '0%r' },
      { contains: '_' },
      { contains: 'r_s' },
      { contains: '!' },
      { contains: 'g!n' },
      { contains: '\\' },
      { contains: 'h\\s' },
      { contains: 'no such text' },
      { namePrefix: 'ann' },
      { namePrefix: 'ANN' },
      { namePrefix: 'jo' },
      { namePrefix: 'zo' },
      { namePrefix: '_' },
      { namePrefix: '_l' },
      { namePrefix: 'under_' },
      { namePrefix: '%' },
      { namePrefix: '100%' },
      { namePrefix: 'back\\' },
      { namePrefix: '\\' },
      { namePrefix: 'bang!' },
      { namePrefix: '!' },
    ]);
  });

  it(
    'q and name ignore the case of non-ASCII letters (ÉLODIE finds Élodie and élodie)',
    gap({ sqlite: "SQLite's LIKE folds the case of ASCII letters only" }),
    async (t) => {
      const { db, all } = await seedText(t);
      await assertTextMatches(db, all, [
        { contains: 'Élodie' },
        { contains: 'élodie' },
        { contains: 'ÉLODIE' },
        { contains: 'ødegård' },
        { contains: 'ZÜRICH' },
        { contains: 'ÆRØ' },
        { namePrefix: 'él' },
        { namePrefix: 'ÉL' },
      ]);
    },
  );

  it(
    'q and name tell accented letters from plain ones (zoe does not find Zoë)',
    gap({ mysql: 'utf8mb4_general_ci takes accented Latin letters as their base letter' }),
    async (t) => {
      const { db, all } = await seedText(t);
      await assertTextMatches(db, all, [
        { contains: 'zoe' },
        { contains: 'elodie' },
        { contains: 'zurich' },
        { namePrefix: 'zoe' },
        { namePrefix: 'Zoë' },
      ]);
    },
  );

  it(
    'q and name tell one emoji from another (😀 does not find 😺)',
    gap({ mysql: 'utf8mb4_general_ci takes every character beyond U+FFFF as equal' }),
    async (t) => {
      const { db, all } = await seedText(t);
      await assertTextMatches(db, all, [
        { contains: '😀' },
        { contains: '😺' },
        { contains: 'y 😀' },
        { namePrefix: 'Cat 😺' },
        { namePrefix: 'Cat 😀' },
      ]);
    },
  );

  it('readUsersJsonPage renders JSON.stringify of the contract, byte for byte, page by page', async (t) => {
    const db = await open(t);
    const stored = [...TRICKY_USERS, ...MORE_TRICKY_USERS, ...sortableUsers(20)];
    await replaceWith(db, stored);
    // Gaps in the ids: a page ends at its last row's id, not at afterId + limit.
    const gone = new Set([5, 6, 11]);
    await db.write
      .deleteFrom('users')
      .where('id', 'in', [...gone])
      .execute();
    await db.waitForReplicas();
    const live = stored
      .map((user, index) => ({ user, id: index + 1 }))
      .filter(({ id }) => !gone.has(id));
    // The stored values come back as they were given (the reference below is the input).
    assert.deepEqual(
      await db.read(listUsers),
      live.map(({ user }) => user),
    );

    for (const pageRows of [4, 1, 1000]) {
      const bodies: Buffer[] = [];
      let afterId = 0;
      for (let pages = 0; pages < 100; pages += 1) {
        const page = await db.read((executor) => readUsersJsonPage(executor, afterId, pageRows));
        const slice = live.filter(({ id }) => id > afterId).slice(0, pageRows);
        const expected = JSON.stringify(slice.map(({ user }) => contractOf(user))).slice(1, -1);
        const what = `pages of ${pageRows}, after id ${afterId}`;
        assert.equal(page.json.toString('utf8'), expected, what);
        assert.ok(page.json.equals(Buffer.from(expected)), `${what}: the same bytes`);
        assert.equal(page.rows, slice.length, what);
        assert.equal(page.lastId, slice.at(-1)?.id, what);
        if (page.rows === 0) break;
        bodies.push(page.json);
        afterId = page.lastId!;
      }
      const body = `[${bodies.map((json) => json.toString('utf8')).join(',')}]`;
      assert.equal(body, JSON.stringify(live.map(({ user }) => contractOf(user))));
    }
  });

  it('readUsersJsonPage of an empty table is an empty page', async (t) => {
    const db = await open(t);
    const page = await db.read((executor) => readUsersJsonPage(executor, 0, 100));
    assert.equal(page.rows, 0);
    assert.equal(page.lastId, undefined);
    assert.equal(page.json.length, 0);
  });

  it('db.insertUsers appends in order with the next ids, a full maxInsertRows batch at once', async (t) => {
    const db = await open(t);
    const first = sortableUsers(3);
    await replaceWith(db, first);
    // The largest batch the dialect is given: every text at its 255-character limit, in
    // characters of 2, 3 and 4 UTF-8 bytes.
    const fillers = ['é', '中', '😀', 'a'];
    const full = Array.from({ length: db.maxInsertRows }, (_, index) => ({
      name: fullWidth(index, fillers[index % 4]!),
      street: fullWidth(index, fillers[(index + 1) % 4]!),
      city: fullWidth(index, fillers[(index + 2) % 4]!),
      state: STATES[index % STATES.length]!,
      userDate: DATES[index % DATES.length]!,
    }));
    const tail = sortableUsers(2, ' tail');
    await appendBatches(db, [full, tail]);
    const all = await readAll(db);
    const expected = [...first, ...full, ...tail];
    assert.equal(all.length, expected.length);
    assert.deepEqual(
      all.map((record) => record.id),
      expected.map((_, index) => index + 1),
    );
    assert.deepEqual(all.map(userOf), expected);
  });

  it('insertUsers with a first id gives exactly those ids; later appends go on after them', async (t) => {
    const db = await open(t);
    const given = sortableUsers(5, ' given');
    await db.withWriteLock(async (locked) => {
      const trx = await beginWriteTransaction(db, locked);
      await insertUsers(trx, given, 'users', 1000);
      await trx.commit().execute();
    });
    const next = sortableUsers(2, ' next');
    await appendBatches(db, [next]);
    const all = await readAll(db);
    assert.deepEqual(
      all.map((record) => record.id),
      [1000, 1001, 1002, 1003, 1004, 1005, 1006],
    );
    assert.deepEqual(all.map(userOf), [...given, ...next]);
  });

  it('replaceUsersTable loads ids from 1 in load order, batch after batch, indexed like users', async (t) => {
    const db = await open(t);
    const migratedIndexes = await indexedColumns(db);
    assert.deepEqual(migratedIndexes, ['city', 'name', 'state', 'user_date_key']);
    await appendBatches(db, [sortableUsers(4, ' old')]);
    const users = sortableUsers(Math.floor(db.maxInsertRows * 2.5));
    assert.deepEqual(await replaceWith(db, users), { replaced: true });
    const all = await readAll(db);
    assert.deepEqual(
      all.map((record) => record.id),
      users.map((_, index) => index + 1),
    );
    assert.deepEqual(all.map(userOf), users);
    assert.deepEqual(await indexedColumns(db), migratedIndexes);
    assert.deepEqual(await usersTables(db), ['users']);
    // Appends go on after the loaded ids.
    await appendBatches(db, [sortableUsers(1, ' appended')]);
    assert.equal((await readAll(db)).at(-1)!.id, users.length + 1);
  });

  it('replaceUsersTable with ifEmpty loads an empty table once and skips one with rows', async (t) => {
    const db = await open(t);
    const version = () => readDataVersion(db.write);
    const loaded = sortableUsers(8);
    const before = await version();
    assert.deepEqual(await replaceWith(db, loaded, { ifEmpty: true, keepPrevious: true }), {
      replaced: true,
    });
    const afterLoad = await version();
    assert.ok(afterLoad > before, 'a replace bumps the data version');

    let loadCalled = false;
    const skipped = await db.replaceUsersTable(
      async (insert) => {
        loadCalled = true;
        await insert(sortableUsers(3, ' other'));
      },
      { ifEmpty: true, keepPrevious: true },
    );
    assert.deepEqual(skipped, { replaced: false, rows: 8 });
    assert.equal(loadCalled, false, 'a skipped replace reads nothing');
    assert.deepEqual((await readAll(db)).map(userOf), loaded);
    assert.equal(await version(), afterLoad, 'a skipped replace changes no data version');
    assert.deepEqual(await usersTables(db), ['users', 'users_prev']);
  });

  it('concurrent ifEmpty replaces leave exactly one copy', async (t) => {
    const db = await open(t);
    const copies = [0, 1, 2].map((copy) => sortableUsers(50, ` copy ${copy}`));
    const outcomes = await Promise.all(
      copies.map((users) => replaceWith(db, users, { ifEmpty: true, keepPrevious: false })),
    );
    const winners = outcomes.flatMap((outcome, index) => (outcome.replaced ? [index] : []));
    assert.equal(winners.length, 1, JSON.stringify(outcomes));
    for (const outcome of outcomes) {
      if (!outcome.replaced) assert.equal(outcome.rows, 50);
    }
    assert.deepEqual((await readAll(db)).map(userOf), copies[winners[0]!]);
  });

  it('a replaceUsersTable whose load fails leaves the live table untouched, and no staging', async (t) => {
    const db = await open(t);
    const live = sortableUsers(30);
    await replaceWith(db, live);
    const before = await readAll(db);
    const indexes = await indexedColumns(db);
    const version = await readDataVersion(db.write);
    for (const keepPrevious of [false, true]) {
      await assert.rejects(
        db.replaceUsersTable(
          async (insert) => {
            await insert(sortableUsers(db.maxInsertRows, ' staged'));
            await insert(sortableUsers(10, ' staged'));
            throw new Error('the file ended in the middle of a row');
          },
          { ifEmpty: false, keepPrevious },
        ),
        /the file ended in the middle of a row/,
      );
      assert.deepEqual(await readAll(db), before, `keepPrevious ${keepPrevious}`);
      assert.deepEqual(await listUsers(db.write), live, 'on the primary too');
      assert.deepEqual(await indexedColumns(db), indexes);
      assert.deepEqual(await usersTables(db), ['users'], 'no staging table left behind');
      assert.equal(await readDataVersion(db.write), version, 'nothing announced');
    }
    // The next replace is not hindered by anything the failed ones left.
    const next = sortableUsers(5, ' next');
    assert.deepEqual(await replaceWith(db, next), { replaced: true });
    assert.deepEqual((await readAll(db)).map(userOf), next);
  });

  it('replaceUsersTable with keepPrevious keeps the replaced table as users_prev, one deep', async (t) => {
    const db = await open(t);
    const previous = async () =>
      (
        await db.write
          .selectFrom('users_prev')
          .select(['name', 'street', 'city', 'state', 'user_date as userDate'])
          .orderBy('id')
          .execute()
      ).map(userOf);
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((tag) => sortableUsers(6, ` ${tag}`));
    await replaceWith(db, a!);
    assert.deepEqual(await usersTables(db), ['users']);
    await replaceWith(db, b!, { ifEmpty: false, keepPrevious: true });
    assert.deepEqual(await previous(), a);
    await replaceWith(db, c!, { ifEmpty: false, keepPrevious: true });
    assert.deepEqual(await previous(), b, 'only the table just replaced is kept');
    // A replace without keepPrevious drops the table it replaces and leaves users_prev alone.
    await replaceWith(db, d!);
    assert.deepEqual((await readAll(db)).map(userOf), d);
    assert.deepEqual(await previous(), b);
    assert.deepEqual(await usersTables(db), ['users', 'users_prev']);
  });

  it('idempotency records: a lookup skips expired ones, the cleanup deletes only them, keys keep their case', async (t) => {
    const db = await open(t);
    const outcome = { status: 201, userId: 7, usersGeneration: 3, body: '{}' };
    const claim = (key: string, expiresAtMs: number) => ({
      caller: 'admin',
      key,
      fingerprint: 'f'.repeat(64),
      nowMs: 1_000,
      expiresAtMs,
    });
    const trx = await beginWriteTransaction(db);
    await insertIdempotencyRecord(trx, claim('old', 2_000), outcome);
    await insertIdempotencyRecord(trx, claim('new', 5_000), outcome);
    await insertIdempotencyRecord(trx, claim('NEW', 5_000), { ...outcome, userId: 8 });
    await trx.commit().execute();
    assert.equal((await findIdempotencyRecord(db.write, 'admin', 'old', 1_999))?.userId, 7);
    assert.equal(await findIdempotencyRecord(db.write, 'admin', 'old', 2_000), undefined);
    assert.equal((await findIdempotencyRecord(db.write, 'admin', 'NEW', 2_000))?.userId, 8);
    assert.equal(await findIdempotencyRecord(db.write, 'other', 'new', 2_000), undefined);
    assert.equal(await deleteExpiredIdempotencyRecords(db.write, 2_000), 1);
    const left = await db.write.selectFrom('idempotency_keys').select('idem_key').execute();
    assert.deepEqual(left.map((row) => row.idem_key).sort(), ['NEW', 'new']);
  });
}
