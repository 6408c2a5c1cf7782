import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { extname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors.js';
import { prefersHtml } from './negotiate.js';

/**
 * The browser pages, as `npm run build` leaves them: `web/` compiled and copied to `dist/web/`.
 * Two levels up from this module both in `src/http/` (tsx) and in `dist/http/` (built).
 */
const DEFAULT_WEB_DIR = fileURLToPath(new URL('../../dist/web/', import.meta.url));

/**
 * Works over plain HTTP behind a proxy (no upgrade-insecure-requests), with no inline script or
 * style and nothing fetched from another origin.
 */
export const PAGE_CONTENT_SECURITY_POLICY = [
  "default-src 'self'",
  "script-src 'self'",
  "script-src-attr 'none'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

interface WebFile {
  body: Buffer;
  contentType: string;
  etag: string;
}

export interface WebRoutesOptions {
  /** Where the built pages are; `dist/web` of this package by default. */
  webDir?: string;
}

/**
 * The directory page (`GET /` for browsers, its modules under `/assets/`) and the status page
 * (`GET /status`, its modules under `/status/assets/`, behind the status routes' guard, which
 * covers every `/status/…` route of the context this is registered in). Each page loads the
 * modules of its own folder and of `shared/`. API clients keep their answer at `/`: a 404
 * problem unless they ask for HTML.
 */
export function registerWebRoutes(app: FastifyInstance, options: WebRoutesOptions = {}): void {
  const files = readWebFiles(options.webDir ?? DEFAULT_WEB_DIR, (message) => app.log.warn(message));

  app.get('/', { schema: { hide: true } }, (request, reply) => {
    if (!prefersHtml(request.headers.accept)) {
      throw new AppError('ERR_HTTP_NOT_FOUND', 'no route for GET /; the API is under /api');
    }
    return sendWebFile(request, reply, files.get('directory/index.html'));
  });
  app.get('/assets/*', { schema: { hide: true } }, (request, reply) =>
    sendWebFile(request, reply, assetOf(files, request, ['directory/', 'shared/'])),
  );
  app.get('/status', { schema: { hide: true } }, (request, reply) =>
    sendWebFile(request, reply, files.get('status/index.html')),
  );
  app.get('/status/assets/*', { schema: { hide: true } }, (request, reply) =>
    sendWebFile(request, reply, assetOf(files, request, ['status/', 'shared/'])),
  );
}

/** Every built file, read once: a few small files, served from memory. */
function readWebFiles(webDir: string, warn: (message: string) => void): Map<string, WebFile> {
  const files = new Map<string, WebFile>();
  let names: string[];
  try {
    names = readdirSync(webDir, { recursive: true, encoding: 'utf8' });
  } catch {
    warn(`no built web pages in ${webDir}: run npm run build; / and /status answer 404`);
    return files;
  }
  for (const name of names) {
    const contentType = CONTENT_TYPES[extname(name)];
    if (contentType === undefined) continue;
    const body = readFileSync(join(webDir, name));
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
    files.set(relative('.', name).split('\\').join('/'), { body, contentType, etag });
  }
  return files;
}

/** The file a `…/assets/*` request names, when it is in one of `folders`. */
function assetOf(
  files: Map<string, WebFile>,
  request: FastifyRequest,
  folders: readonly string[],
): WebFile | undefined {
  const name = (request.params as { '*': string })['*'];
  return folders.some((folder) => name.startsWith(folder)) ? files.get(name) : undefined;
}

function sendWebFile(
  request: FastifyRequest,
  reply: FastifyReply,
  file: WebFile | undefined,
): FastifyReply {
  if (file === undefined) {
    throw new AppError('ERR_HTTP_NOT_FOUND', `no page at ${request.url.split('?')[0]}`);
  }
  // Revalidated on every load: a new release is seen at once, an unchanged file costs a 304.
  reply
    .header('cache-control', 'no-cache')
    .header('etag', file.etag)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'same-origin');
  if (file.contentType.startsWith('text/html')) {
    reply.header('content-security-policy', PAGE_CONTENT_SECURITY_POLICY);
  }
  if (request.headers['if-none-match'] === file.etag) return reply.code(304).send();
  return reply.type(file.contentType).send(file.body);
}
