/**
 * Writes a CycloneDX SBOM of the production dependencies (what the image ships) with `npm sbom`,
 * checking it is JSON before it lands. Needs an installed node_modules (`npm ci`).
 *
 * Usage: tsx scripts/write-sbom.ts [OUT=dist/sbom.cdx.json]
 */
import { execFile } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { promisify } from 'node:util';

const out = resolve(process.argv[2] ?? 'dist/sbom.cdx.json');
const { stdout } = await promisify(execFile)(
  'npm',
  ['sbom', '--omit', 'dev', '--sbom-format', 'cyclonedx', '--sbom-type', 'application'],
  // The whole tree's JSON: far above execFile's 1 MB default.
  { maxBuffer: 64 * 1024 * 1024 },
);
const sbom = JSON.parse(stdout) as { bomFormat?: string; components?: unknown[] };
if (sbom.bomFormat !== 'CycloneDX' || !Array.isArray(sbom.components)) {
  throw new Error('npm sbom did not print a CycloneDX document');
}
await mkdir(dirname(out), { recursive: true });
await writeFile(out, stdout);
console.log(`${out}: CycloneDX SBOM, ${sbom.components.length} production components`);
