import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import ts from 'typescript';
import { ERROR_CODES } from '../../src/errors.js';
import { REPO_ROOT } from '../helpers/paths.js';

const REGISTERED = Object.keys(ERROR_CODES).sort();

const COMPARISONS = new Set([
  ts.SyntaxKind.EqualsEqualsEqualsToken,
  ts.SyntaxKind.ExclamationEqualsEqualsToken,
  ts.SyntaxKind.EqualsEqualsToken,
  ts.SyntaxKind.ExclamationEqualsToken,
]);

/**
 * The registered codes that a string literal in src/ (outside the registry) hands on: to
 * `new AppError(…)`, `problemOf(…)` or anything typed `ErrorCode`. A literal that is only
 * compared (`error.code === '…'`, `case '…':`) tests for a code; it never produces one.
 */
async function codesProducedInSource(): Promise<Set<string>> {
  const src = join(REPO_ROOT, 'src');
  const files = (await readdir(src, { recursive: true })).filter(
    (file) => file.endsWith('.ts') && file !== 'errors.ts',
  );
  const produced = new Set<string>();
  for (const file of files) {
    const text = await readFile(join(src, file), 'utf8');
    const visit = (node: ts.Node): void => {
      if (ts.isStringLiteral(node) && Object.hasOwn(ERROR_CODES, node.text)) {
        const { parent } = node;
        const compared =
          (ts.isBinaryExpression(parent) && COMPARISONS.has(parent.operatorToken.kind)) ||
          ts.isCaseClause(parent);
        if (!compared) produced.add(node.text);
      }
      ts.forEachChild(node, visit);
    };
    visit(ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true));
  }
  return produced;
}

/** The rows of the errors table in docs/api.md: `| \`CODE\` | status | when |`. */
async function documentedCodes(): Promise<{ code: string; status: number }[]> {
  const api = await readFile(join(REPO_ROOT, 'docs', 'api.md'), 'utf8');
  const section = /^## Errors$([\s\S]*?)(?=^## )/m.exec(api)?.[1];
  assert.ok(section !== undefined, 'docs/api.md has an "## Errors" section');
  return [...section.matchAll(/^\| `(ERR_[A-Z_]+)` +\| (\d{3}) +\|/gm)].map((row) => ({
    code: row[1]!,
    status: Number(row[2]),
  }));
}

describe('the error registry', () => {
  it('every registered code is produced somewhere in src/', async () => {
    const produced = await codesProducedInSource();
    assert.deepEqual(
      REGISTERED.filter((code) => !produced.has(code)),
      [],
      'registered codes nothing in src/ throws: use them where clients meet them, or remove them',
    );
  });

  it('docs/api.md documents every registered code once, with its status, and no other', async () => {
    const rows = await documentedCodes();
    const documented = rows.map((row) => row.code);
    assert.deepEqual(
      REGISTERED.filter((code) => !documented.includes(code)),
      [],
      'registered codes missing from the errors table in docs/api.md',
    );
    assert.deepEqual(
      documented.filter((code) => !Object.hasOwn(ERROR_CODES, code)),
      [],
      'documented codes that are not in src/errors.ts',
    );
    assert.deepEqual(
      documented.filter((code, index) => documented.indexOf(code) !== index),
      [],
      'codes documented twice',
    );
    for (const { code, status } of rows) {
      assert.equal(
        status,
        ERROR_CODES[code as keyof typeof ERROR_CODES].status,
        `${code}: docs/api.md gives status ${status}`,
      );
    }
  });
});
