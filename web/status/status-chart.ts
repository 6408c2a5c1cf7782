import { el } from '../shared/dom.js';
import { formatClock, formatDuration, formatNumber } from './format.js';
import { RingBuffer } from './ring-buffer.js';

/** One update's figures, as the chart keeps them. */
export interface Reading {
  /** The snapshot's `at`, in ms since the epoch (the server's clock, so gaps are real gaps). */
  atMs: number;
  at: string;
  requestsPerSecond: number;
  p99Ms: number | null;
  /** The largest lag among the replicas that report one; null without any. */
  lagSeconds: number | null;
}

interface Series {
  key: 'requestsPerSecond' | 'p99Ms' | 'lagSeconds';
  title: string;
  unit: string;
  /** What the summary says when the series has no value at all in the window. */
  empty: string;
}

const SERIES: readonly Series[] = [
  {
    key: 'requestsPerSecond',
    title: 'Requests per second',
    unit: '/s',
    empty: 'no readings yet',
  },
  { key: 'p99Ms', title: 'p99 response time', unit: ' ms', empty: 'no requests answered' },
  {
    key: 'lagSeconds',
    title: 'Replica lag (largest)',
    unit: ' s',
    empty: 'no replica reports a lag (SQLite, no replicas, or lag unknown)',
  },
];

/** How many of the newest readings the text table lists. */
const TABLE_ROWS = 10;
const SVG_NS = 'http://www.w3.org/2000/svg' as const;
/** The drawing's own coordinates; the SVG is stretched to the figure's width by CSS. */
const WIDTH = 600;
const HEIGHT = 100;

export interface StatusChartOptions {
  /** Where the figures go (one per series). */
  container: HTMLElement;
  /** The body of the table that lists the newest readings (the chart's text alternative). */
  readingsBody: HTMLTableSectionElement;
  /** How far back the chart reaches. */
  windowMs: number;
  /** The most readings kept, whatever the update interval: memory stays bounded. */
  capacity: number;
}

export interface StatusChart {
  add(reading: Reading): void;
  /** The readings kept, oldest first. */
  readings(): Reading[];
}

/**
 * Small line charts of requests/s, p99 and replica lag over the last minutes, drawn as inline SVG
 * from the readings this page has received. Each has a written summary beside it (now, lowest,
 * highest), and a table lists the newest readings: the drawing itself is hidden from screen
 * readers.
 */
export function createStatusChart(options: StatusChartOptions): StatusChart {
  const history = new RingBuffer<Reading>(options.capacity);
  const figures = SERIES.map((series) => {
    const id = `chart-${series.key}`;
    const svg = svgElement('svg', {
      viewBox: `0 0 ${WIDTH} ${HEIGHT}`,
      preserveAspectRatio: 'none',
      class: `chart chart-${series.key}`,
      'aria-hidden': 'true',
      focusable: 'false',
    });
    const top = el('span', { class: 'axis-top' });
    const summary = el('p', { class: 'chart-summary', id: `${id}-summary` });
    const figure = el(
      'figure',
      { class: 'chart-figure', id, 'aria-describedby': `${id}-summary` },
      el('figcaption', { class: 'chart-title' }, series.title),
      summary,
      el('div', { class: 'chart-frame' }, top, svg),
      el(
        'div',
        { class: 'axis-bottom' },
        el('span', {}, `${formatDuration(options.windowMs / 1000)} ago`),
        el('span', {}, 'now'),
      ),
    );
    options.container.append(figure);
    return { series, svg, top, summary, figure };
  });

  const render = () => {
    const all = history.toArray();
    const latest = all.at(-1);
    const inWindow =
      latest === undefined ? [] : all.filter((r) => latest.atMs - r.atMs <= options.windowMs);
    for (const { series, svg, top, summary, figure } of figures) {
      const values = inWindow.map((r) => r[series.key]);
      const known = values.filter((v): v is number => v !== null);
      const max = known.length === 0 ? 0 : Math.max(...known);
      const yMax = niceCeiling(max);
      top.textContent = `${formatNumber(yMax)}${series.unit}`;
      figure.dataset.readings = String(known.length);
      summary.textContent = summarise(series, inWindow, known);
      const shapes: SVGElement[] = [
        svgElement('line', { x1: 0, x2: WIDTH, y1: HEIGHT / 2, y2: HEIGHT / 2, class: 'gridline' }),
        svgElement('line', { x1: 0, x2: WIDTH, y1: HEIGHT, y2: HEIGHT, class: 'baseline' }),
      ];
      if (latest !== undefined) {
        const x = (r: Reading) => WIDTH * (1 - (latest.atMs - r.atMs) / options.windowMs);
        const y = (v: number) => HEIGHT - (v / yMax) * (HEIGHT - 4) - 1;
        // A missing value breaks the line rather than drawing it down to zero.
        for (const run of runsOfValues(inWindow, series.key)) {
          if (run.length === 1) {
            const [only] = run as [Reading];
            shapes.push(
              svgElement('circle', { cx: x(only), cy: y(only[series.key]!), r: 2, class: 'line' }),
            );
            continue;
          }
          const points = run.map((r) => `${x(r).toFixed(1)},${y(r[series.key]!).toFixed(1)}`);
          shapes.push(svgElement('polyline', { points: points.join(' '), class: 'line' }));
        }
      }
      svg.replaceChildren(...shapes);
    }
    options.readingsBody.replaceChildren(
      ...all
        .slice(-TABLE_ROWS)
        .reverse()
        .map((r) =>
          el(
            'tr',
            {},
            el('th', { scope: 'row' }, el('time', { datetime: r.at }, formatClock(r.at))),
            el('td', {}, formatNumber(r.requestsPerSecond)),
            el('td', {}, r.p99Ms === null ? 'none' : `${formatNumber(r.p99Ms)} ms`),
            el('td', {}, r.lagSeconds === null ? 'none' : `${formatNumber(r.lagSeconds)} s`),
          ),
        ),
    );
  };

  return {
    add(reading) {
      const latest = history.toArray().at(-1);
      // Another instance's clock (a failover behind HAProxy) may run behind: start afresh.
      if (latest !== undefined && reading.atMs < latest.atMs) history.clear();
      history.push(reading);
      render();
    },
    readings: () => history.toArray(),
  };
}

function summarise(series: Series, readings: Reading[], known: number[]): string {
  if (known.length === 0) return `${series.title}: ${series.empty}.`;
  const now = readings.at(-1)?.[series.key];
  const span = readings.length < 2 ? 0 : (readings.at(-1)!.atMs - readings[0]!.atMs) / 1000;
  const nowText = now === null || now === undefined ? 'none' : formatNumber(now) + series.unit;
  return (
    `${series.title}: now ${nowText}; over the last ${formatDuration(span)}, ` +
    `lowest ${formatNumber(Math.min(...known))}${series.unit}, ` +
    `highest ${formatNumber(Math.max(...known))}${series.unit}.`
  );
}

/** The stretches of consecutive readings that have a value for `key`. */
function runsOfValues(readings: Reading[], key: Series['key']): Reading[][] {
  const runs: Reading[][] = [];
  let run: Reading[] = [];
  for (const reading of readings) {
    if (reading[key] === null) {
      if (run.length > 0) runs.push(run);
      run = [];
    } else {
      run.push(reading);
    }
  }
  if (run.length > 0) runs.push(run);
  return runs;
}

/** The top of the y axis: 1, 2 or 5 times a power of ten, at least `value` (1 for nothing). */
export function niceCeiling(value: number): number {
  if (!(value > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) {
    if (step * power >= value) return step * power;
  }
  return 10 * power;
}

function svgElement<K extends keyof SVGElementTagNameMap>(
  tag: K,
  attributes: Record<string, string | number>,
): SVGElementTagNameMap[K] {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attributes)) {
    element.setAttribute(name, String(value));
  }
  return element;
}
