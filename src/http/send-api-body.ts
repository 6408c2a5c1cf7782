import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import type { ApiBody, ContentEncoding, OpenBody, Segment } from './api-cache.js';
import { ifRangeAllows, parseRange } from './byte-range.js';
import { MEDIA_TYPES } from './format-users.js';
import { StreamIdleError, type StreamLimits } from './stream-users.js';

/** Responses this small go out uncompressed: the header overhead outweighs the saving. */
export const MIN_COMPRESS_BYTES = 1024;

/** Bytes read from a page file at a time (a page is ~200 KB; its gzip member ~50 KB). */
const READ_BYTES = 256 * 1024;

/**
 * Sends a built bare `/api` body: 304 for a matching If-None-Match, a single byte range (206,
 * or 416) of the uncompressed body, else the whole body in the negotiated encoding the body
 * offers (page files: gzip, not br). Memory goes out as one buffer; page files are read in
 * turn with backpressure, held until the last byte is read or the client is gone.
 */
export async function sendApiBody(
  request: FastifyRequest,
  reply: FastifyReply,
  body: ApiBody,
  preferred: readonly ContentEncoding[],
  limits: StreamLimits,
) {
  // no-cache: clients and proxies may keep it but revalidate (a cheap 304) every time.
  reply.header('cache-control', 'no-cache').header('accept-ranges', 'bytes');
  const ifNoneMatch = request.headers['if-none-match'];
  if (ifNoneMatch !== undefined && body.matches(ifNoneMatch)) {
    return reply.code(304).header('etag', body.etagOf(undefined)).send();
  }
  reply.type(MEDIA_TYPES.json);
  const rangeHeader = request.headers.range;
  // A range is of the uncompressed body (the one representation whose bytes are the same on
  // every instance and every request): with Range the answer is identity.
  if (
    rangeHeader !== undefined &&
    ifRangeAllows(headerText(request.headers['if-range']), body.etag)
  ) {
    const opened = await body.open(undefined);
    const range = parseRange(rangeHeader, opened.length);
    if (range.kind === 'unsatisfiable') {
      opened.release();
      reply.header('etag', body.etag).header('content-range', `bytes */${opened.length}`);
      throw new AppError(
        'ERR_HTTP_RANGE_NOT_SATISFIABLE',
        `the body has ${opened.length} bytes: ask for a range that starts within them`,
      );
    }
    if (range.kind === 'part') {
      reply
        .code(206)
        .header('etag', body.etag)
        .header('content-range', `bytes ${range.start}-${range.end}/${opened.length}`)
        .header('content-length', range.end - range.start + 1);
      return reply.send(bodyStream(opened, range.start, range.end + 1, limits));
    }
    opened.release();
  }
  const encoding = preferred.find((candidate) => body.offers(candidate));
  const small = body.memory !== undefined && body.memory.length < MIN_COMPRESS_BYTES;
  const chosen = small ? undefined : encoding;
  const opened = await body.open(chosen);
  reply.header('etag', body.etagOf(chosen)).header('content-length', opened.length);
  if (chosen !== undefined) reply.header('content-encoding', chosen);
  const only = opened.segments.length === 1 ? opened.segments[0] : undefined;
  if (only !== undefined && 'bytes' in only) {
    opened.release();
    return reply.send(only.bytes);
  }
  return reply.send(bodyStream(opened, 0, opened.length, limits));
}

/**
 * Bytes `start` to `end` (exclusive) of `opened`'s segments as a stream that reads the next
 * file only when the client has taken what came before. Released (the files may go) once the
 * last byte is read, or when the client leaves or takes nothing for `limits.idleTimeoutMs`.
 */
export function bodyStream(
  opened: OpenBody,
  start: number,
  end: number,
  limits: StreamLimits,
): Readable {
  const segments = opened.segments;
  let index = 0;
  let position = 0; // where segment `index` starts in the body
  let inSegment = 0; // next byte to read within segment `index`
  let handle: FileHandle | undefined;
  let timer: NodeJS.Timeout | undefined;
  // Skip the segments before `start`.
  while (index < segments.length && position + lengthOf(segments[index]!) <= start) {
    position += lengthOf(segments[index]!);
    index += 1;
  }
  inSegment = start - position;
  const finish = () => {
    clearTimeout(timer);
    timer = undefined;
    const closing = handle;
    handle = undefined;
    // A close that fails leaves nothing to do: the descriptor is gone either way.
    void closing?.close().catch(() => undefined);
    opened.release();
  };
  const stream = new Readable({
    highWaterMark: READ_BYTES,
    read() {
      void pump();
    },
    destroy(error, callback) {
      finish();
      callback(error);
    },
  });
  const pump = async () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      limits.cut();
      stream.destroy(new StreamIdleError(limits.idleTimeoutMs));
    }, limits.idleTimeoutMs);
    timer.unref();
    // One chunk per call: Readable calls read() again when it wants more.
    try {
      for (;;) {
        if (index >= segments.length || position + inSegment >= end) {
          finish();
          stream.push(null);
          return;
        }
        const segment = segments[index]!;
        const length = lengthOf(segment);
        const upTo = Math.min(length, end - position);
        let chunk: Buffer;
        if ('bytes' in segment) {
          chunk = segment.bytes.subarray(inSegment, upTo);
        } else {
          if (handle === undefined) {
            const opening = await open(segment.path, 'r');
            // Destroyed while opening: finish() has run, so this handle is ours to close.
            if (stream.destroyed) return void (await opening.close());
            handle = opening;
          }
          const size = Math.min(READ_BYTES, upTo - inSegment);
          const buffer = Buffer.allocUnsafe(size);
          const { bytesRead } = await handle.read(buffer, 0, size, inSegment);
          if (bytesRead === 0) {
            throw new Error(`page file ${segment.path} is shorter than ${length} bytes`);
          }
          chunk = bytesRead === size ? buffer : buffer.subarray(0, bytesRead);
        }
        if (stream.destroyed) {
          finish();
          return;
        }
        inSegment += chunk.length;
        if (inSegment >= upTo) {
          position += length;
          index += 1;
          inSegment = 0;
          const done = handle;
          handle = undefined;
          await done?.close();
        }
        if (chunk.length > 0) {
          stream.push(chunk);
          return;
        }
      }
    } catch (error) {
      stream.destroy(error instanceof Error ? error : new Error(String(error)));
    }
  };
  return stream;
}

function lengthOf(segment: Segment): number {
  return 'bytes' in segment ? segment.bytes.length : segment.length;
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}
