import type { ServerResponse } from 'node:http';

/**
 * Ends a response with these buffers, in order, in one corked writev (with the head): a body kept
 * as a list of pages goes out without being copied into one buffer first.
 */
export function writeBuffers(response: ServerResponse, buffers: readonly Buffer[]): void {
  response.cork();
  for (const buffer of buffers) response.write(buffer);
  response.end();
  response.uncork();
}
