/** Deterministic sample users; see generate-users.ts. Shared by the script, tests and benchmarks. */

const SEED_ROWS = [
  ['Duane Adams', 'Hojzi Path', 'Zurmubku', 'NY', '08/08/43'],
  ['Ruby Hampton', 'Seime Plaza', 'Ikduju', 'KS', '16/09/86'],
  ['Carl Johnson', 'Zopwe Drive', 'Ehazeru', 'RI', '27/11/64'],
] as const;

const FIRST_NAMES = (
  'Duane Ruby Carl Alice Marcus Nora Elijah Grace Owen Hazel Felix Iris Jasper Leah Milo Olive ' +
  'Rosa Victor Wade Zoe Amir Beatriz Chen Dmitri Élodie Farah Gustavo Håkon Inés Jürgen Kofi ' +
  'Léa Mónica Nikolai Oğuz Priya Quentin Renée Søren Tomás Ulla Yuki Zoë'
).split(' ');
const LAST_NAMES = (
  'Adams Hampton Johnson Baker Carter Diaz Evans Fischer Garcia Harris Ito Jensen Kim Lopez ' +
  'Müller Nguyen Ortiz Patel Quinn Reyes Schmidt Tanaka Urban Vargas Weber Xu Young Zimmerman ' +
  "O'Brien Peña Ødegård Brontë"
).split(' ');
const STREET_KINDS =
  'Path Plaza Drive Road Street Way Court Lane Avenue Boulevard Circle Parkway'.split(' ');
const STATES = (
  'AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ ' +
  'NM NY NC ND OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC PR'
).split(' ');
const CONSONANTS = 'bcdfghjklmnprstvwz';
const VOWELS = 'aeiou';
const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** mulberry32: small, fast, and the same sequence on every platform. */
function createRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function generateRow(random: () => number): string[] {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const word = (syllables: number) => {
    let text = '';
    for (let index = 0; index < syllables; index += 1)
      text += pick([...CONSONANTS]) + pick([...VOWELS]);
    if (random() < 0.5) text += pick([...CONSONANTS]);
    return text[0]!.toUpperCase() + text.slice(1);
  };
  const month = 1 + Math.floor(random() * 12);
  const year = Math.floor(random() * 100);
  const lastDay = month === 2 && year % 4 !== 0 ? 28 : DAYS_IN_MONTH[month - 1]!;
  const day = 1 + Math.floor(random() * lastDay);
  const two = (value: number) => String(value).padStart(2, '0');
  return [
    `${pick(FIRST_NAMES)} ${pick(LAST_NAMES)}`,
    `${word(2)} ${pick(STREET_KINDS)}`,
    word(3),
    pick(STATES),
    `${two(day)}/${two(month)}/${two(year)}`,
  ];
}

const KEYS = ['NAME', 'STREET', 'CITY', 'STATE', 'USER_DATE'];

function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

function formatRow(row: readonly string[], format: 'csv' | 'json' | 'ndjson'): string {
  if (format === 'csv') return row.map(csvField).join(',') + '\n';
  return JSON.stringify(Object.fromEntries(KEYS.map((key, index) => [key, row[index]])));
}

/** Yields the file in chunks of about 1,000 rows. */
export function* generateUsers(
  rows: number,
  format: 'csv' | 'json' | 'ndjson' = 'csv',
): Generator<string> {
  const random = createRandom(20_241_128);
  const parts: string[] = [format === 'csv' ? KEYS.join(',') + '\n' : format === 'json' ? '[' : ''];
  for (let index = 0; index < rows; index += 1) {
    const row = index < SEED_ROWS.length ? SEED_ROWS[index]! : generateRow(random);
    const text = formatRow(row, format);
    parts.push(
      format === 'json'
        ? (index === 0 ? '\n' : ',\n') + text
        : format === 'ndjson'
          ? text + '\n'
          : text,
    );
    if (parts.length >= 1000) {
      yield parts.join('');
      parts.length = 0;
    }
  }
  if (format === 'json') parts.push('\n]\n');
  if (parts.length > 0) yield parts.join('');
}
