import type { ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import type { ApiBody, ContentEncoding, OpenBody } from './api-cache.js';
import { CHUNK_BYTES, giveBackChunkBuffer, readChunks } from './body-chunks.js';
import { ifRangeAllows, parseRange } from './byte-range.js';
import { MEDIA_TYPES } from './format-users.js';
import { StreamIdleError, type StreamLimits } from './stream-users.js';
import { writeBuffers } from './write-buffers.js';

/** Responses this small go out uncompressed: the header overhead outweighs the saving. */
export const MIN_COMPRESS_BYTES = 1024;

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
      return sendOpened(request, reply, opened, range.start, range.end + 1, limits);
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
  return sendOpened(request, reply, opened, 0, opened.length, limits);
}

/** Bytes `start` to `end` (exclusive) of `opened`: from memory in one writev, else read in chunks. */
function sendOpened(
  request: FastifyRequest,
  reply: FastifyReply,
  opened: OpenBody,
  start: number,
  end: number,
  limits: StreamLimits,
): void {
  const buffers = buffersOf(opened, start, end);
  if (buffers === undefined) return sendBody(request, reply, opened, start, end, limits);
  opened.release();
  const response = hijackForBody(request, reply);
  if (response !== undefined) writeBuffers(response, buffers);
}

/** Views of bytes `start` to `end` of a body whose segments are all in memory; else undefined. */
function buffersOf(opened: OpenBody, start: number, end: number): Buffer[] | undefined {
  const buffers: Buffer[] = [];
  let position = 0;
  for (const segment of opened.segments) {
    if (!('bytes' in segment)) return undefined;
    const { bytes } = segment;
    const from = Math.max(start - position, 0);
    const to = Math.min(end - position, bytes.length);
    if (from < to)
      buffers.push(from === 0 && to === bytes.length ? bytes : bytes.subarray(from, to));
    position += bytes.length;
  }
  return buffers;
}

/**
 * The raw response with the reply's status and headers, the reply hijacked: Fastify sends a
 * buffer or a stream, not a list of buffers, nor can it say when the socket is done with one.
 */
function hijack(reply: FastifyReply): ServerResponse {
  const headers = reply.getHeaders();
  reply.hijack();
  const response = reply.raw;
  for (const [name, value] of Object.entries(headers)) {
    if (value !== undefined) response.setHeader(name, value);
  }
  return response;
}

/** The hijacked response to write a body on; undefined for HEAD, whose answer is then sent. */
function hijackForBody(request: FastifyRequest, reply: FastifyReply): ServerResponse | undefined {
  const response = hijack(reply);
  if (request.method !== 'HEAD') return response;
  response.end();
  return undefined;
}

/**
 * Chunks read ahead per response sent to a socket: one being written while the next ones are
 * read (at most DEPTH × CHUNK_BYTES of buffers per response, however slow the client).
 */
const DEPTH = 3;

/** A chunk goes to the socket in writes of this size (the idle timer's grain, as before). */
const WRITE_BYTES = 256 * 1024;

/**
 * Sends bytes `start` to `end` (exclusive) of `opened` itself, on the raw response (the reply
 * is hijacked: Fastify's pipe cannot say when the socket is done with a buffer, which is when it
 * can be reused): chunks of the page files read ahead into reused buffers and written in order.
 * Node has no sendfile for HTTP, so each byte is copied from the page cache once by a read.
 * Released (the files may go) once every read has completed: after the last byte, or when the
 * client leaves or takes nothing for `limits.idleTimeoutMs`.
 */
function sendBody(
  request: FastifyRequest,
  reply: FastifyReply,
  opened: OpenBody,
  start: number,
  end: number,
  limits: StreamLimits,
): void {
  const response = hijackForBody(request, reply);
  if (response === undefined) {
    opened.release();
    return;
  }
  let done = false;
  const timer = setTimeout(() => {
    limits.cut();
    stop(new StreamIdleError(limits.idleTimeoutMs));
  }, limits.idleTimeoutMs);
  timer.unref();
  const stop = (error?: Error) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    reader.stop();
    if (error !== undefined) {
      if (!(error instanceof StreamIdleError))
        request.log.error({ err: error }, 'sending /api failed');
      response.destroy(error);
    }
  };
  const reader = readChunks(opened.segments, start, end, DEPTH, {
    ready(chunk, buffer) {
      const last = reader.finished;
      // In pieces, each a sign of progress when written: a slow client taking a chunk over
      // more than the idle timeout is not idle.
      for (let offset = 0; offset < chunk.length; offset += WRITE_BYTES) {
        const lastPiece = offset + WRITE_BYTES >= chunk.length;
        response.write(chunk.subarray(offset, offset + WRITE_BYTES), (error) => {
          if (error !== undefined && error !== null) return stop();
          if (done) return;
          timer.refresh();
          if (!lastPiece) return;
          giveBackChunkBuffer(buffer);
          if (last) {
            done = true;
            clearTimeout(timer);
            return;
          }
          reader.slotFree();
        });
      }
      if (last) response.end();
    },
    failed: (error) => stop(error),
    settled: () => opened.release(),
  });
  // Gone before the end (closed, reset): stop reading; the files go when the reads are done.
  response.once('close', () => stop());
  reader.start();
}

/**
 * Bytes `start` to `end` (exclusive) of `opened`'s segments as a stream, read ahead in chunks
 * as the consumer takes them (tests, and any caller that wants a stream). Released once the
 * last byte is read, or when the consumer leaves or takes nothing for `limits.idleTimeoutMs`.
 */
export function bodyStream(
  opened: OpenBody,
  start: number,
  end: number,
  limits: StreamLimits,
): Readable {
  let owed = 0;
  const timer = setTimeout(() => {
    limits.cut();
    stream.destroy(new StreamIdleError(limits.idleTimeoutMs));
  }, limits.idleTimeoutMs);
  timer.unref();
  const reader = readChunks(opened.segments, start, end, DEPTH, {
    ready(chunk) {
      const last = reader.finished;
      // A pushed buffer belongs to the consumer: not reused.
      const more = stream.push(chunk);
      if (last) {
        clearTimeout(timer);
        stream.push(null);
      } else if (more) {
        reader.slotFree();
      } else {
        owed += 1;
      }
    },
    failed: (error) => stream.destroy(error),
    settled: () => opened.release(),
  });
  const stream = new Readable({
    highWaterMark: CHUNK_BYTES,
    read() {
      timer.refresh();
      for (; owed > 0; owed -= 1) reader.slotFree();
    },
    destroy(error, callback) {
      clearTimeout(timer);
      reader.stop();
      callback(error);
    },
  });
  if (start >= end) {
    clearTimeout(timer);
    stream.push(null);
  }
  reader.start();
  return stream;
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}
