import { read } from 'node:fs';
import type { Segment } from './api-cache.js';

/**
 * Bytes of a body sent at a time: one read per page file it spans (several at once, on the
 * thread pool) into one buffer, then one write to the socket. A page is ~200 KB (its gzip member
 * ~46 KB), so a body sent page by page took 1,000 reads and writes per 1M-user response, and a
 * separator between two gzip members went out as a 20-byte write of its own.
 */
export const CHUNK_BYTES = 1024 * 1024;

/** Chunk buffers kept for reuse once the socket has taken them (a fresh 1 MB costs page faults). */
const SPARE_BUFFERS = 16;
const spare: Buffer[] = [];

/** A buffer of CHUNK_BYTES, reused when one is spare. */
export function takeChunkBuffer(): Buffer {
  return spare.pop() ?? Buffer.allocUnsafeSlow(CHUNK_BYTES);
}

/** Gives back a buffer nothing refers to any more (its write has completed). */
export function giveBackChunkBuffer(buffer: Buffer): void {
  if (buffer.length === CHUNK_BYTES && spare.length < SPARE_BUFFERS) spare.push(buffer);
}

/** Where each segment starts in the body, and the body's length at the end. */
export function segmentStarts(segments: readonly Segment[]): number[] {
  const starts = [0];
  let position = 0;
  for (const segment of segments) {
    position += 'bytes' in segment ? segment.bytes.length : segment.length;
    starts.push(position);
  }
  return starts;
}

/**
 * Fills `target[0, size)` with the body's bytes from `from`: bytes in memory are copied, and
 * each page file the range spans is read at its position, all at once; `done` once every read
 * has completed (after the first failure too, so nothing writes into `target` after `done`).
 */
export function fillChunk(
  segments: readonly Segment[],
  starts: readonly number[],
  target: Buffer,
  from: number,
  size: number,
  done: (error: Error | undefined) => void,
): void {
  let pending = 1;
  let failure: Error | undefined;
  const settle = (error?: Error) => {
    failure ??= error;
    pending -= 1;
    if (pending === 0) done(failure);
  };
  // The last segment that starts at or before `from`.
  let low = 0;
  let high = segments.length - 1;
  while (low < high) {
    const middle = (low + high + 1) >> 1;
    if (starts[middle]! <= from) low = middle;
    else high = middle - 1;
  }
  let offset = 0;
  for (let index = low; offset < size && index < segments.length; index += 1) {
    const segment = segments[index]!;
    const inSegment = from + offset - starts[index]!;
    const length = starts[index + 1]! - starts[index]!;
    const count = Math.min(length - inSegment, size - offset);
    if (count <= 0) continue;
    if ('bytes' in segment) {
      segment.bytes.copy(target, offset, inSegment, inSegment + count);
    } else {
      pending += 1;
      readFile(segment, target, offset, count, inSegment, settle);
    }
    offset += count;
  }
  if (offset < size) failure = new Error(`the body ends before byte ${from + size}`);
  settle();
}

/** Reads `count` bytes of a page file at `position` into `target` at `offset`. */
function readFile(
  segment: Extract<Segment, { path: string }>,
  target: Buffer,
  offset: number,
  count: number,
  position: number,
  settle: (error?: Error) => void,
): void {
  const withDescriptor = (descriptor: { fd: number; done(): void }) => {
    const more = (at: number, left: number) => {
      read(descriptor.fd, target, at, left, position + (at - offset), (error, bytesRead) => {
        if (error !== null) {
          descriptor.done();
          return settle(error);
        }
        if (bytesRead === 0) {
          descriptor.done();
          return settle(new Error(`page file ${segment.path} is shorter than ${segment.length}`));
        }
        if (bytesRead < left) return more(at + bytesRead, left - bytesRead);
        descriptor.done();
        settle();
      });
    };
    more(offset, count);
  };
  try {
    const descriptor = segment.descriptor();
    if ('then' in descriptor) {
      descriptor.then(withDescriptor, (error: unknown) =>
        settle(error instanceof Error ? error : new Error(String(error))),
      );
    } else {
      withDescriptor(descriptor);
    }
  } catch (error) {
    settle(error instanceof Error ? error : new Error(String(error)));
  }
}

export interface ChunkReaderEvents {
  /** The next chunk in order (a view of `buffer`); its slot is free again at `slotFree`. */
  ready(chunk: Buffer, buffer: Buffer): void;
  /** A read failed: nothing more comes. */
  failed(error: Error): void;
  /** Every read has completed and none will start (the end, a stop or a failure). */
  settled(): void;
}

/**
 * Reads bytes `start` to `end` (exclusive) of a body in chunks, up to `depth` at a time ahead of
 * the consumer, and hands them over in order. A slot is taken by each chunk from the start of its
 * read until the consumer gives it back (`slotFree`: the socket has taken it), so a body being
 * sent holds at most `depth` chunk buffers, however slow its client.
 */
export function readChunks(
  segments: readonly Segment[],
  start: number,
  end: number,
  depth: number,
  events: ChunkReaderEvents,
) {
  const starts = segmentStarts(segments);
  let next = start;
  let slots = depth;
  let reading = 0;
  let stopped = false;
  let settled = false;
  const queue: { chunk: Buffer; buffer: Buffer; ready: boolean }[] = [];
  const settleIfDone = () => {
    if (settled || reading > 0 || !(stopped || next >= end)) return;
    settled = true;
    events.settled();
  };
  const deliver = () => {
    while (!stopped && queue[0]?.ready === true) {
      const { chunk, buffer } = queue.shift()!;
      events.ready(chunk, buffer);
    }
  };
  const schedule = () => {
    while (!stopped && next < end && slots > 0) {
      const size = Math.min(CHUNK_BYTES, end - next);
      const buffer = size > CHUNK_BYTES / 4 ? takeChunkBuffer() : Buffer.allocUnsafe(size);
      const item = { chunk: buffer.subarray(0, size), buffer, ready: false };
      queue.push(item);
      slots -= 1;
      reading += 1;
      const from = next;
      next += size; // before the read: a chunk of memory segments alone is filled at once
      fillChunk(segments, starts, buffer, from, size, (error) => {
        reading -= 1;
        if (error !== undefined) {
          if (!stopped) {
            stopped = true;
            events.failed(error);
          }
        } else if (stopped) {
          giveBackChunkBuffer(buffer);
        } else {
          item.ready = true;
          deliver();
        }
        settleIfDone();
      });
    }
    settleIfDone();
  };
  return {
    /** Starts the first reads. */
    start: schedule,
    /** A chunk's slot is free (its bytes are gone to the client): read further. */
    slotFree() {
      slots += 1;
      schedule();
    },
    /** Reads no more; `settled` follows once the reads under way have completed. */
    stop() {
      stopped = true;
      for (const item of queue.splice(0)) if (item.ready) giveBackChunkBuffer(item.buffer);
      settleIfDone();
    },
    /** True when every byte has been handed over. */
    get finished() {
      return next >= end && queue.length === 0 && reading === 0;
    },
  };
}
