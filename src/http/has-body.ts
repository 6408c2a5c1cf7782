import type { IncomingMessage } from 'node:http';

/** Whether the request carries a body (chunked, or a content-length above 0). */
export function hasBody(raw: IncomingMessage): boolean {
  return (
    raw.headers['transfer-encoding'] !== undefined || Number(raw.headers['content-length'] ?? 0) > 0
  );
}
