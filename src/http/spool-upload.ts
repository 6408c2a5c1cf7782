import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { AppError } from '../errors.js';

export interface SpooledUpload {
  path: string;
  remove(): Promise<void>;
}

/**
 * Writes a request body to a private temp file, refusing it past `maxBytes`. The import then
 * reads the file at disk speed, so a slow client never holds the database's write lock.
 */
export async function spoolUpload(body: Readable, maxBytes: number): Promise<SpooledUpload> {
  const folder = await mkdtemp(join(tmpdir(), 'users-api-upload-'));
  const remove = () => rm(folder, { recursive: true, force: true });
  const path = join(folder, 'upload');
  let received = 0;
  const limit = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (received > maxBytes) callback(uploadTooLarge(maxBytes));
      else callback(null, chunk);
    },
  });
  // pipe(), not pipeline(): a refused upload must not destroy the request, or its socket goes
  // with it and the client never sees the 413.
  body.pipe(limit);
  body.once('error', (error) => limit.destroy(error));
  body.once('close', () => {
    if (!body.readableEnded)
      limit.destroy(new Error('the client closed the upload before it ended'));
  });
  try {
    await pipeline(limit, createWriteStream(path, { mode: 0o600 }));
    return { path, remove };
  } catch (error) {
    body.unpipe(limit);
    await remove();
    throw error;
  }
}

export function uploadTooLarge(maxBytes: number): AppError {
  return new AppError(
    'ERR_UPLOAD_TOO_LARGE',
    `the upload is larger than MAX_UPLOAD_BYTES (${maxBytes} bytes); import big files with the CLI (users-api import FILE)`,
  );
}
