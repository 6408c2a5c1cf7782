import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../helpers/paths.js';

interface Component {
  name: string;
  version: string;
  scope?: string;
}

describe('npm run sbom', () => {
  it('writes a CycloneDX SBOM of the production dependencies only, where it is told', async (t) => {
    const folder = await mkdtemp(join(tmpdir(), 'users-api-sbom-'));
    t.after(() => rm(folder, { recursive: true, force: true }));
    const out = join(folder, 'sbom.cdx.json');
    const { stdout } = await promisify(execFile)('npm', ['run', '--silent', 'sbom', '--', out], {
      cwd: REPO_ROOT,
    });
    assert.match(stdout, /CycloneDX SBOM, \d+ production components/);

    const sbom = JSON.parse(await readFile(out, 'utf8')) as {
      bomFormat: string;
      specVersion: string;
      metadata: { component: { version: string } };
      components: Component[];
    };
    assert.equal(sbom.bomFormat, 'CycloneDX');
    const names = new Set(sbom.components.map((component) => component.name));
    const packageJson = JSON.parse(await readFile(join(REPO_ROOT, 'package.json'), 'utf8')) as {
      version: string;
      dependencies: Record<string, string>;
      devDependencies: Record<string, string>;
    };
    // npm names the root component after the checkout's folder; its version is package.json's.
    assert.equal(sbom.metadata.component.version, packageJson.version);
    for (const name of Object.keys(packageJson.dependencies)) {
      assert.ok(names.has(name), `${name} (a production dependency) is listed`);
    }
    for (const name of Object.keys(packageJson.devDependencies)) {
      assert.ok(!names.has(name), `${name} (a dev dependency) is not listed`);
    }
    // Transitive dev-only packages stay out too (esbuild comes only through tsx).
    assert.ok(!names.has('esbuild'), 'esbuild is not listed');
    const betterSqlite = sbom.components.find((component) => component.name === 'better-sqlite3');
    assert.match(betterSqlite?.version ?? '', /^12\./);
  });
});
