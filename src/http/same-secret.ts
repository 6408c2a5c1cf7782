import { createHash, timingSafeEqual } from 'node:crypto';

/** Compares digests so the comparison takes the same time whatever the lengths. */
export function sameSecret(given: string, expected: string): boolean {
  const digest = (text: string) => createHash('sha256').update(text).digest();
  return timingSafeEqual(digest(given), digest(expected));
}
