import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { startBuiltServer } from '../helpers/child-server.js';
import { REPO_ROOT } from '../helpers/paths.js';

const ADMIN_TOKEN = 'test-admin-token-0123456789';
/** The whole budget for any one upload: parsing it may not grow the process by more. */
const MAX_PEAK_GROWTH_BYTES = 200 * 1024 * 1024;
/** Under the default MAX_UPLOAD_BYTES (50 MiB), so each body reaches the parser. */
const BODY_BYTES = 45_000_000;

/** The process's peak resident set size so far (VmHWM), in bytes. */
async function peakRss(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kilobytes = /^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1];
  assert.ok(kilobytes !== undefined, status);
  return Number(kilobytes) * 1024;
}

/** `head`, then `filler` repeated up to `bytes` in all, then `tail`. */
function body(head: string, filler: string, tail: string, bytes = BODY_BYTES): Buffer {
  const buffer = Buffer.alloc(bytes - tail.length, filler);
  buffer.write(head);
  return Buffer.concat([buffer, Buffer.from(tail)]);
}

/** One object with ~4,000,000 distinct keys: `"000000":0,"000001":0,…`. */
function objectWithManyKeys(): Buffer {
  const width = 6;
  const entry = width + 5; // "key":0,
  const keys = Math.floor((BODY_BYTES - 4) / entry);
  const buffer = Buffer.alloc(2 + keys * entry + 1);
  buffer.write('[{');
  let at = 2;
  for (let index = 0; index < keys; index += 1) {
    at += buffer.write(`"${index.toString(36).padStart(width, '0')}":0,`, at, 'latin1');
  }
  buffer.write('}]', at - 1, 'latin1');
  return buffer;
}

const HOSTILE_UPLOADS: { name: string; type: string; body: () => Buffer }[] = [
  {
    name: '10,000,000 nested arrays',
    type: 'application/json',
    body: () => Buffer.from('['.repeat(10_000_000) + ']'.repeat(10_000_000)),
  },
  {
    name: 'one item that is a 45 MB string',
    type: 'application/json',
    body: () => body('["', 'x', '"]'),
  },
  {
    name: 'one user object with ~4,000,000 keys',
    type: 'application/json',
    body: objectWithManyKeys,
  },
  {
    name: 'an NDJSON line of 45 MB',
    type: 'application/x-ndjson',
    body: () => body('{"NAME":"', 'x', '"}\n'),
  },
];

describe('hostile uploads', () => {
  it(
    'are refused with 422 without growing the server by 200 MB, and change nothing',
    { timeout: 240_000 },
    async (t) => {
      const dir = await mkdtemp(join(tmpdir(), 'users-api-memory-'));
      t.after(() => rm(dir, { recursive: true, force: true }));
      const server = await startBuiltServer(t, dir, {
        DATABASE_URL: `sqlite:${join(dir, 'users.db')}`,
        DATA_FILE: join(REPO_ROOT, 'data/users.csv'),
        ADMIN_TOKEN,
      });
      const pid = server.child.pid!;
      const table = async () => (await fetch(`${server.url}/api`)).text();
      const before = await table();
      assert.equal((JSON.parse(before) as unknown[]).length, 1000);
      const idlePeak = await peakRss(pid);

      // Every upload is tried and summed up, so a failure shows how each one fared.
      const outcomes: string[] = [];
      const peaks: string[] = [];
      for (const upload of HOSTILE_UPLOADS) {
        const response = await fetch(`${server.url}/addtosql?mode=append`, {
          method: 'POST',
          headers: { 'content-type': upload.type, authorization: `Bearer ${ADMIN_TOKEN}` },
          body: upload.body(),
        });
        const text = await response.text();
        const problem = JSON.parse(text) as { code?: string; detail?: string };
        const growth = (await peakRss(pid)) - idlePeak;
        peaks.push(`${upload.name}: +${Math.round(growth / 1024 / 1024)} MB`);
        outcomes.push(
          [
            upload.name,
            response.status,
            response.headers.get('content-type'),
            problem.code,
            /^item 1: /.test(problem.detail ?? '') ? 'names item 1' : problem.detail?.slice(0, 200),
            growth < MAX_PEAK_GROWTH_BYTES ? 'within budget' : 'over budget',
          ].join(' | '),
        );
      }
      t.diagnostic(`peak RSS over the idle server: ${peaks.join('; ')}`);
      assert.deepEqual(
        outcomes,
        HOSTILE_UPLOADS.map((upload) =>
          [
            upload.name,
            422,
            'application/problem+json; charset=utf-8',
            'ERR_IMPORT_BAD_FILE',
            'names item 1',
            'within budget',
          ].join(' | '),
        ),
        peaks.join('; '),
      );
      assert.equal(await table(), before);
    },
  );
});
