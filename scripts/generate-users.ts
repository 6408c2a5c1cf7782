/**
 * Writes deterministic users in the seed's CSV format: the bundled data/users.csv is
 * `tsx scripts/generate-users.ts 1000 > data/users.csv`, and benchmarks ask for more rows.
 * The same N always gives the same bytes (seeded PRNG); the first three rows are the seed's.
 *
 * Usage: tsx scripts/generate-users.ts [ROWS=1000] [--format csv|json|ndjson] > FILE
 */
import { generateUsers } from './generate-users-lib.js';

const args = process.argv.slice(2);
const formatIndex = args.indexOf('--format');
const format = formatIndex === -1 ? 'csv' : args.splice(formatIndex, 2)[1];
const rows = Number(args[0] ?? 1000);
if (
  !Number.isSafeInteger(rows) ||
  rows < 0 ||
  (format !== 'csv' && format !== 'json' && format !== 'ndjson')
) {
  console.error('usage: tsx scripts/generate-users.ts [ROWS] [--format csv|json|ndjson]');
  process.exit(2);
}
for (const chunk of generateUsers(rows, format)) {
  if (!process.stdout.write(chunk))
    await new Promise((resolve) => process.stdout.once('drain', resolve));
}
