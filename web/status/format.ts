/** Plain-words formatting of the snapshot's numbers for the status page. */

/** `42 s`, `5 min`, `3 h 12 min`, `2 d 4 h`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  const minutes = Math.floor(s / 60);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours} h ${minutes % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** `812 B`, `47.1 kB`, `3.2 MB` (powers of 1000, as `ls -l --si`). */
export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = bytes / 1000;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/** A count with thousands separators: `1,000,000`. */
export function formatCount(value: number): string {
  return value.toLocaleString('en-US');
}

/** A reading with a sensible number of digits: `0.25`, `4.2`, `125`. */
export function formatNumber(value: number): string {
  if (value === 0) return '0';
  if (Math.abs(value) < 1) return value.toFixed(2);
  if (Math.abs(value) < 100) return value.toFixed(1).replace(/\.0$/, '');
  return Math.round(value).toString();
}

/** The local wall-clock time of an ISO 8601 instant, `14:03:27`. */
export function formatClock(iso: string): string {
  return new Date(iso).toLocaleTimeString('en-GB', { hour12: false });
}
