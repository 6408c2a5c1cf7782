/** Reads an lcov file (node --test's lcov reporter) into per-file figures; see coverage.ts. */

export interface CoverageCounts {
  found: number;
  hit: number;
}

export interface FileCoverage {
  file: string;
  lines: CoverageCounts;
  branches: CoverageCounts;
  functions: CoverageCounts;
}

/** The summary lines of an lcov record this reads (the detail lines are left alone). */
const COUNTERS = {
  LF: ['lines', 'found'],
  LH: ['lines', 'hit'],
  BRF: ['branches', 'found'],
  BRH: ['branches', 'hit'],
  FNF: ['functions', 'found'],
  FNH: ['functions', 'hit'],
} as const;

/**
 * One entry per `SF:` record, with its LF/LH, BRF/BRH and FNF/FNH figures. A file recorded twice
 * is refused: adding its records would count its lines twice.
 */
export function parseLcov(text: string): FileCoverage[] {
  const files: FileCoverage[] = [];
  const seen = new Set<string>();
  let current: FileCoverage | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('SF:')) {
      const file = line.slice(3);
      if (seen.has(file)) throw new Error(`the lcov file records ${file} twice`);
      seen.add(file);
      const empty = () => ({ found: 0, hit: 0 });
      current = { file, lines: empty(), branches: empty(), functions: empty() };
      files.push(current);
      continue;
    }
    const colon = line.indexOf(':');
    const key = line.slice(0, colon);
    if (current === undefined || !Object.hasOwn(COUNTERS, key)) continue;
    const [kind, field] = COUNTERS[key as keyof typeof COUNTERS];
    current[kind][field] = Number(line.slice(colon + 1));
  }
  return files;
}

/** `hit` of `found` as a percentage; 100 when there is nothing to cover. */
export function percent({ found, hit }: CoverageCounts): number {
  return found === 0 ? 100 : (hit / found) * 100;
}

function add(a: CoverageCounts, b: CoverageCounts): CoverageCounts {
  return { found: a.found + b.found, hit: a.hit + b.hit };
}

/** The files whose path starts with `prefix`, their totals, and the `worst` least-covered by lines. */
export function summarizeCoverage(files: readonly FileCoverage[], prefix: string, worst: number) {
  const counted = files.filter((file) => file.file.startsWith(prefix));
  const zero = { found: 0, hit: 0 };
  const total = counted.reduce(
    (sum, file) => ({
      lines: add(sum.lines, file.lines),
      branches: add(sum.branches, file.branches),
      functions: add(sum.functions, file.functions),
    }),
    { lines: zero, branches: zero, functions: zero },
  );
  const leastCovered = [...counted]
    .sort((a, b) => percent(a.lines) - percent(b.lines) || b.lines.found - a.lines.found)
    .slice(0, worst);
  return { files: counted.length, total, leastCovered };
}

/** The summary as text: totals, then the least-covered files, then files no test loaded. */
export function formatCoverageSummary(
  summary: ReturnType<typeof summarizeCoverage>,
  prefix: string,
  unloaded: readonly string[],
): string {
  const cell = (counts: CoverageCounts) =>
    `${percent(counts).toFixed(2).padStart(6)}% ${`${counts.hit}/${counts.found}`.padEnd(11)}`;
  const row = (name: string, figures: Omit<FileCoverage, 'file'>, width: number) =>
    `${name.padEnd(width)}  ${cell(figures.lines)}  ${cell(figures.branches)}  ${cell(figures.functions)}`.trimEnd();
  const width = Math.max(5, ...summary.leastCovered.map((file) => file.file.length));
  const header = `${''.padEnd(width)}  ${'lines'.padEnd(19)}  ${'branches'.padEnd(19)}  functions`;
  return [
    `Coverage of ${prefix} (${summary.files} files loaded by the tests)`,
    header,
    row('total', summary.total, width),
    '',
    `The ${summary.leastCovered.length} least covered (by lines):`,
    ...summary.leastCovered.map((file) => row(file.file, file, width)),
    '',
    unloaded.length === 0
      ? `Every file in ${prefix} was loaded by a test.`
      : `Loaded by no test (not in the figures; type-only modules are never loaded): ${unloaded.join(', ')}`,
  ].join('\n');
}
