/**
 * The chaos soak's report, from what the soak recorded (scripts/chaos.ts): a JSON summary and an
 * SVG timeline (requests/s, errors/s and p99 latency, faults drawn as labelled bands). Pure
 * functions, no I/O: the soak writes the files.
 */

/** One request of the soak's load, as the client saw it. */
export interface ChaosSample {
  kind: 'read' | 'stream' | 'append' | 'create';
  path: string;
  /** Epoch ms. */
  startedAt: number;
  ms: number;
  /** HTTP status; 0 when no answer came (connection error, client timeout). */
  status: number;
  /** Ms from the start until the status line arrived; undefined when it never did. */
  headersMs: number | undefined;
  servedBy: string | undefined;
  /** Why the request failed, when it did: `no answer`, `cut body`, `bad body`, `status 503 CODE`. */
  failure: string | undefined;
  /** A write's user names (each unique to the soak). */
  names?: string[];
}

/** One fault the soak injected, or a planned switchover. Times are epoch ms. */
export interface ChaosFault {
  name: string;
  /** The host it hit (a switchover: the one made the primary). */
  target: string;
  /** The role the draw chose when another host holds it now (`primary` after a switchover). */
  role?: string;
  args: string[];
  start: number;
  /** When the heal began: the end of the fault itself (a switchover: the command's end). */
  healStart: number;
  /** When the heal returned (a killed server is up again). */
  healed: number;
  /** When the lab was calm again (see chaos.ts); undefined if it was not within the budget. */
  calmAt: number | undefined;
  /** A switchover: the primary it moved from. */
  from?: string;
  /** A switchover: what `users-api db switchover` printed of itself. */
  command?: { durationMs: number; writesPausedMs: number };
  error?: string;
}

export interface WindowStats {
  requests: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

const isWrite = (sample: ChaosSample) => sample.kind === 'append' || sample.kind === 'create';
export const isAcknowledged = (sample: ChaosSample) => sample.status >= 200 && sample.status < 300;

export function percentile(sorted: number[], fraction: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))]!;
}

/** Reads (and streams) started in [from, to): count, failures, latency percentiles. */
export function windowStats(samples: ChaosSample[], from: number, to: number): WindowStats {
  const inWindow = samples.filter(
    (sample) => !isWrite(sample) && sample.startedAt >= from && sample.startedAt < to,
  );
  const sorted = inWindow.map((sample) => sample.ms).sort((a, b) => a - b);
  return {
    requests: inWindow.length,
    errors: inWindow.filter((sample) => sample.failure !== undefined).length,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    maxMs: sorted.at(-1) ?? 0,
  };
}

export function faultLabel(fault: Pick<ChaosFault, 'name' | 'target' | 'args' | 'role'>): string {
  const role = fault.role === undefined ? [] : [`(now ${fault.role})`];
  return [fault.name, fault.target, ...role, ...fault.args].join(' ');
}

/** Errors counted by `kind: failure` (`read: no answer`, `append: status 503 ERR_…`). */
export function errorsByKind(samples: ChaosSample[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const sample of samples) {
    if (sample.failure === undefined) continue;
    const key = `${sample.kind}: ${sample.failure}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return Object.fromEntries(Object.entries(counts).sort(([a], [b]) => a.localeCompare(b)));
}

export function median(values: number[]): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Per fault: its window's figures and its recovery time (heal → calm). */
export function describeFaults(samples: ChaosSample[], faults: ChaosFault[], t0: number) {
  return faults.map((fault) => ({
    fault: faultLabel(fault),
    startS: round((fault.start - t0) / 1000),
    endS: round((fault.healStart - t0) / 1000),
    durationMs: fault.healStart - fault.start,
    healMs: fault.healed - fault.healStart,
    recoveryMs: fault.calmAt === undefined ? null : fault.calmAt - fault.healStart,
    during: windowStats(samples, fault.start, fault.healStart),
    recovering: windowStats(samples, fault.healStart, fault.calmAt ?? fault.healed),
    ...(fault.error === undefined ? {} : { error: fault.error }),
  }));
}

/** Median recovery (heal → calm) per fault kind, in ms. */
export function recoveryMedians(faults: ChaosFault[]): Record<string, number | null> {
  const byKind = new Map<string, number[]>();
  for (const fault of faults) {
    const list = byKind.get(fault.name) ?? [];
    if (fault.calmAt !== undefined) list.push(fault.calmAt - fault.healStart);
    byKind.set(fault.name, list);
  }
  return Object.fromEntries(
    [...byKind]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([kind, list]) => [kind, median(list) ?? null]),
  );
}

/**
 * Per switchover, from the samples: the write attempts refused from its start until the lab was
 * calm (by status), how long writes were paused as the load saw it (from the first refused
 * attempt's start to the answer of the first acknowledged write sent after it; 0 when no
 * attempt fell into the pause: the load writes every 0.75–2.25 s), and how many acknowledged
 * writes sent in that time are not on every server exactly once (must be 0).
 */
export function describeSwitchovers(
  samples: ChaosSample[],
  faults: ChaosFault[],
  /** Each database server's row count per user name. */
  counts: Map<string, number>[],
) {
  const writes = samples.filter(isWrite).sort((a, b) => a.startedAt - b.startedAt);
  return faults
    .filter((fault) => fault.name === 'switchover')
    .map((fault) => {
      const until = fault.calmAt ?? fault.healed;
      const during = writes.filter(
        (sample) => sample.startedAt >= fault.start && sample.startedAt < until,
      );
      const refused = during.filter((sample) => !isAcknowledged(sample));
      const statuses: Record<string, number> = {};
      for (const sample of refused) {
        const key = sample.failure ?? String(sample.status);
        statuses[key] = (statuses[key] ?? 0) + 1;
      }
      const firstRefused = refused[0];
      const resumed =
        firstRefused === undefined
          ? undefined
          : writes.find(
              (sample) => sample.startedAt > firstRefused.startedAt && isAcknowledged(sample),
            );
      const acknowledged = during.filter(isAcknowledged);
      const lost = acknowledged.filter((sample) =>
        (sample.names ?? []).some((name) => counts.some((server) => server.get(name) !== 1)),
      );
      return {
        switchover: faultLabel(fault),
        from: fault.from,
        to: fault.target,
        ...(fault.error === undefined ? {} : { error: fault.error }),
        commandMs: fault.command?.durationMs ?? null,
        commandWritesPausedMs: fault.command?.writesPausedMs ?? null,
        recoveryMs: fault.calmAt === undefined ? null : fault.calmAt - fault.healStart,
        writeAttempts: during.length,
        refusedAttempts: statuses,
        writesPausedMs:
          firstRefused === undefined
            ? 0
            : resumed === undefined
              ? null
              : resumed.startedAt + resumed.ms - firstRefused.startedAt,
        acknowledgedWrites: acknowledged.length,
        writesLost: lost.length,
      };
    });
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

// ---- SVG ---------------------------------------------------------------------------------------

const FAULT_COLOURS: Record<string, string> = {
  kill: '#d62728',
  freeze: '#1f77b4',
  partition: '#9467bd',
  oneway: '#8c564b',
  loss: '#e377c2',
  slow: '#ff7f0e',
  lag: '#2ca02c',
  diskfull: '#7f7f7f',
  switchover: '#17becf',
};

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * The timeline: three panels over the soak's time (requests/s, errors/s, p99 read latency on a
 * log scale), each fault a coloured band with its label, its recovery (heal → calm) a lighter
 * band after it.
 */
export function renderTimeline(options: {
  samples: ChaosSample[];
  faults: ChaosFault[];
  t0: number;
  t1: number;
  title: string;
}): string {
  const { samples, faults, t0, t1, title } = options;
  const width = 1200;
  const left = 70;
  const right = 20;
  const labelTop = 40;
  // Room for the longest label, a role-resolved one: `partition replica1 (now replica2) 1`.
  const labelHeight = 240;
  const panelHeight = 130;
  const panelGap = 28;
  const panelsTop = labelTop + labelHeight;
  const plotWidth = width - left - right;
  const seconds = Math.max(1, Math.ceil((t1 - t0) / 1000));
  const height = panelsTop + 3 * (panelHeight + panelGap) + 30;
  const x = (time: number) =>
    left + Math.min(1, Math.max(0, (time - t0) / 1000 / seconds)) * plotWidth;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${left}" y="22" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
  );

  // Per-second buckets for rates; 5 s buckets for p99 (one second holds too few reads).
  const perSecond = Array.from({ length: seconds }, () => ({ requests: 0, errors: 0 }));
  const p99Bucket = 5;
  const latency = Array.from({ length: Math.ceil(seconds / p99Bucket) }, () => [] as number[]);
  for (const sample of samples) {
    const second = Math.floor((sample.startedAt - t0) / 1000);
    if (second < 0 || second >= seconds) continue;
    perSecond[second]!.requests += 1;
    if (sample.failure !== undefined) perSecond[second]!.errors += 1;
    if (!isWrite(sample)) latency[Math.floor(second / p99Bucket)]!.push(sample.ms);
  }
  const p99 = latency.map((list) =>
    percentile(
      list.sort((a, b) => a - b),
      0.99,
    ),
  );

  // Fault bands across the label strip and every panel, with labels in the strip.
  const bandsBottom = panelsTop + 3 * (panelHeight + panelGap) - panelGap;
  for (const fault of faults) {
    const colour = FAULT_COLOURS[fault.name] ?? '#bcbd22';
    const x0 = x(fault.start);
    const x1 = Math.max(x0 + 1, x(fault.healStart));
    const calm = fault.calmAt ?? fault.healed;
    out.push(
      `<rect x="${x0.toFixed(1)}" y="${labelTop}" width="${(x1 - x0).toFixed(1)}" height="${bandsBottom - labelTop}" fill="${colour}" fill-opacity="0.22"/>`,
      `<rect x="${x1.toFixed(1)}" y="${panelsTop}" width="${Math.max(0, x(calm) - x1).toFixed(1)}" height="${bandsBottom - panelsTop}" fill="${colour}" fill-opacity="0.08"/>`,
      `<text transform="translate(${(x0 + 9).toFixed(1)},${labelTop + labelHeight - 24}) rotate(-90)" fill="${colour}">${escapeXml(faultLabel(fault))}</text>`,
    );
  }

  const panel = (
    index: number,
    name: string,
    values: number[],
    bucketSeconds: number,
    colour: string,
    scale: 'linear' | 'log',
  ) => {
    const top = panelsTop + index * (panelHeight + panelGap);
    const bottom = top + panelHeight;
    out.push(
      `<text x="${left}" y="${top - 6}" font-weight="bold">${escapeXml(name)}</text>`,
      `<rect x="${left}" y="${top}" width="${plotWidth}" height="${panelHeight}" fill="none" stroke="#999"/>`,
    );
    let y: (value: number) => number;
    let ticks: { value: number; label: string }[];
    if (scale === 'log') {
      // 1 ms to 100 s.
      const [low, high] = [0, 5];
      y = (value) => bottom - ((Math.log10(Math.max(1, value)) - low) / (high - low)) * panelHeight;
      ticks = [1, 10, 100, 1000, 10_000, 100_000].map((value) => ({
        value,
        label: value >= 1000 ? `${value / 1000} s` : `${value} ms`,
      }));
    } else {
      const max = Math.max(1, ...values);
      const step = niceStep(max);
      const top = Math.ceil(max / step) * step;
      y = (value) => bottom - (value / top) * panelHeight;
      ticks = Array.from({ length: Math.round(top / step) + 1 }, (_, i) => ({
        value: i * step,
        label: String(i * step),
      }));
    }
    for (const tick of ticks) {
      const ty = y(tick.value).toFixed(1);
      out.push(
        `<line x1="${left}" x2="${left + plotWidth}" y1="${ty}" y2="${ty}" stroke="#ddd"/>`,
        `<text x="${left - 6}" y="${ty}" text-anchor="end" dominant-baseline="middle">${tick.label}</text>`,
      );
    }
    const points = values
      .map((value, i) => {
        const px = x(t0 + (i + 0.5) * bucketSeconds * 1000);
        return `${px.toFixed(1)},${y(value).toFixed(1)}`;
      })
      .join(' ');
    out.push(`<polyline points="${points}" fill="none" stroke="${colour}" stroke-width="1.2"/>`);
    return bottom;
  };
  panel(
    0,
    'requests/s (reads, streams and writes, by start time)',
    perSecond.map((bucket) => bucket.requests),
    1,
    '#1f77b4',
    'linear',
  );
  panel(
    1,
    'errors/s (failed reads and refused writes)',
    perSecond.map((bucket) => bucket.errors),
    1,
    '#d62728',
    'linear',
  );
  const lastBottom = panel(
    2,
    `p99 read latency (${p99Bucket} s buckets, log scale)`,
    p99,
    p99Bucket,
    '#2ca02c',
    'log',
  );

  // Time axis: a tick every minute (every 30 s on short runs).
  const tickSeconds = seconds > 300 ? 60 : 30;
  for (let second = 0; second <= seconds; second += tickSeconds) {
    const tx = x(t0 + second * 1000).toFixed(1);
    out.push(
      `<line x1="${tx}" x2="${tx}" y1="${lastBottom}" y2="${lastBottom + 4}" stroke="#999"/>`,
      `<text x="${tx}" y="${lastBottom + 16}" text-anchor="middle">${Math.floor(second / 60)}:${String(second % 60).padStart(2, '0')}</text>`,
    );
  }
  // Legend: one swatch per fault kind present.
  let legendX = left;
  const kinds = [...new Set(faults.map((fault) => fault.name))].sort();
  for (const kind of kinds) {
    out.push(
      `<rect x="${legendX}" y="${lastBottom + 26}" width="12" height="12" fill="${FAULT_COLOURS[kind] ?? '#bcbd22'}" fill-opacity="0.5"/>`,
      `<text x="${legendX + 16}" y="${lastBottom + 36}">${escapeXml(kind)}</text>`,
    );
    legendX += 26 + kind.length * 7;
  }
  out.push(
    `<text x="${legendX + 10}" y="${lastBottom + 36}" fill="#555">band: fault in force; lighter band after it: heal until calm; time in min:s</text>`,
    '</svg>',
  );
  return `${out.join('\n')}\n`;
}

function niceStep(max: number): number {
  const rough = max / 4;
  const power = 10 ** Math.floor(Math.log10(rough));
  for (const factor of [1, 2, 5, 10]) if (factor * power >= rough) return factor * power;
  return 10 * power;
}
