/**
 * `npm run coverage`: the unit and integration suites (no MariaDB needed) under node's built-in
 * test coverage, then the figures for src/ only (test/, scripts/ and the rest left out), the
 * least-covered files, and any file in src/ no test loaded. The lcov file stays in coverage/.
 *
 * Usage: tsx scripts/coverage.ts [WORST=5]
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { formatCoverageSummary, parseLcov, summarizeCoverage } from './coverage-summary-lib.js';

const WORST = Number(process.argv[2] ?? 5);
const SOURCE = 'src/';
const LCOV = 'coverage/lcov.info';
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

function run(args: string[]): number {
  return spawnSync(process.execPath, args, { stdio: 'inherit' }).status ?? 1;
}

const testFiles = ['test/unit', 'test/integration'].flatMap((dir) =>
  readdirSync(dir)
    .filter((name) => name.endsWith('.test.ts'))
    .map((name) => `${dir}/${name}`),
);

// Tests start the built server, and node passes the coverage on to child processes. Node 20
// cannot map coverage through the separate .js.map files tsc writes ("Could not report code
// coverage. TypeError: Cannot read properties of undefined (reading 'line')"); inline maps it
// reads, and counts the servers' lines towards src/. The normal build is put back afterwards.
if (run([tsc, '-p', 'tsconfig.build.json', '--sourceMap', 'false', '--inlineSourceMap']) !== 0) {
  process.exit(1);
}
mkdirSync('coverage', { recursive: true });
const tested = run([
  '--import',
  'tsx',
  '--test',
  '--experimental-test-coverage',
  // One file at a time, as test:integration runs them.
  '--test-concurrency=1',
  '--test-reporter=dot',
  '--test-reporter-destination=stdout',
  '--test-reporter=lcov',
  `--test-reporter-destination=${LCOV}`,
  ...testFiles,
]);
const rebuilt = run([tsc, '-p', 'tsconfig.build.json']);
if (tested !== 0 || rebuilt !== 0) process.exit(1);

const files = parseLcov(readFileSync(LCOV, 'utf8'));
const recorded = new Set(files.map((file) => file.file));
const unloaded = readdirSync(SOURCE, { recursive: true, encoding: 'utf8' })
  .filter((path) => path.endsWith('.ts') && !path.endsWith('.d.ts'))
  .map((path) => SOURCE + path)
  .filter((path) => !recorded.has(path))
  .sort();
console.log(formatCoverageSummary(summarizeCoverage(files, SOURCE, WORST), SOURCE, unloaded));
// Node 20 counts every line a file's source map spans, so comments and type declarations count
// as lines: files that are mostly types show low line coverage; their branches and functions tell.
console.log('\n(Lines include comments and type declarations: see branches and functions.)');
