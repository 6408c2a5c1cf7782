/**
 * MariaDB GTID positions (`domain-server-seq,…`, one per replication domain): how far one
 * position is behind another, in transactions per domain. Pure; no I/O.
 */
export interface GtidBehind {
  /** Transactions in `ahead` that `position` lacks, summed over every domain. */
  transactions: number;
}

/** The sequence number of each domain in a position. Unparseable parts are ignored. */
export function parseGtidPosition(position: string): Map<number, number> {
  const domains = new Map<number, number>();
  for (const part of position.split(',')) {
    const match = /^\s*(\d+)-(\d+)-(\d+)\s*$/.exec(part);
    if (match === null) continue;
    const domain = Number(match[1]);
    domains.set(domain, Math.max(domains.get(domain) ?? 0, Number(match[3])));
  }
  return domains;
}

/** How many transactions `position` is behind `ahead` (0 when it has all of them or more). */
export function gtidBehind(position: string, ahead: string): GtidBehind {
  const have = parseGtidPosition(position);
  let transactions = 0;
  for (const [domain, seq] of parseGtidPosition(ahead)) {
    transactions += Math.max(0, seq - (have.get(domain) ?? 0));
  }
  return { transactions };
}
