import { readFileSync } from 'node:fs';

/**
 * The node flags the service runs with, read from `npm start` (package.json is the one place
 * they are written): the local cluster and the benchmark start it the same way, and a test
 * holds the Dockerfile's and the systemd unit's flags to these.
 */
export const SERVE_NODE_FLAGS: readonly string[] = (() => {
  const { scripts } = JSON.parse(
    readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
  ) as { scripts: { start: string } };
  const words = scripts.start.split(' ');
  if (words[0] !== 'node' || words.at(-2) !== 'dist/main.js' || words.at(-1) !== 'serve') {
    throw new Error(`npm start is not "node <flags> dist/main.js serve": ${scripts.start}`);
  }
  return words.slice(1, -2);
})();
