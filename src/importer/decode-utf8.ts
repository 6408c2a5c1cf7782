import { AppError } from '../errors.js';

const NEWLINE = 0x0a;

/**
 * Decodes a byte stream as UTF-8, strictly: a file in another encoding (Latin-1, UTF-16) or a
 * binary file is refused with the line and byte offset of the first invalid byte, never
 * imported with replacement characters. A leading BOM is dropped.
 */
export async function* decodeUtf8(chunks: AsyncIterable<Buffer>): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let offset = 0;
  let line = 1;
  for await (const chunk of chunks) {
    let text: string;
    try {
      text = decoder.decode(chunk, { stream: true });
    } catch (error) {
      throw invalidUtf8(chunk, offset, line, error);
    }
    offset += chunk.length;
    line += countNewlines(chunk, chunk.length);
    if (text !== '') yield text;
  }
  try {
    const rest = decoder.decode();
    if (rest !== '') yield rest;
  } catch (error) {
    throw invalidUtf8(Buffer.alloc(0), offset, line, error);
  }
}

function invalidUtf8(chunk: Buffer, chunkOffset: number, chunkLine: number, cause: unknown) {
  const index = Math.max(0, firstInvalidByte(chunk));
  const line = chunkLine + countNewlines(chunk, index);
  return new AppError(
    'ERR_IMPORT_BAD_FILE',
    `line ${line}: the file is not valid UTF-8 text (invalid byte at or near offset ` +
      `${chunkOffset + index}); save it as UTF-8 and try again`,
    { cause },
  );
}

function countNewlines(chunk: Buffer, end: number): number {
  let count = 0;
  for (let index = chunk.indexOf(NEWLINE); index !== -1 && index < end;) {
    count += 1;
    index = chunk.indexOf(NEWLINE, index + 1);
  }
  return count;
}

/** Index of the first byte that cannot start or continue a UTF-8 sequence; -1 when none. */
function firstInvalidByte(bytes: Buffer): number {
  let index = 0;
  while (index < bytes.length) {
    const lead = bytes[index]!;
    const continuations =
      lead < 0x80 ? 0 : lead >= 0xc2 && lead <= 0xdf ? 1 : lead >= 0xe0 && lead <= 0xef ? 2 : 3;
    if (lead >= 0x80 && (lead < 0xc2 || lead > 0xf4)) return index;
    for (let next = 1; next <= continuations && index + next < bytes.length; next += 1) {
      if ((bytes[index + next]! & 0xc0) !== 0x80) return index;
    }
    index += continuations + 1;
  }
  return -1;
}
