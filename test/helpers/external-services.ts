import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { access, constants } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import type { TestContext } from 'node:test';

/**
 * Finds the first of `names` on PATH (or in /usr/sbin, where Debian puts haproxy). Missing:
 * under CI=true the test fails, since a skipped check there would pass silently; locally it
 * is skipped with a message saying what to install. Returns undefined when skipped.
 */
export async function requireBinary(
  t: TestContext,
  names: readonly string[],
  debianPackage: string,
): Promise<string | undefined> {
  const folders = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/bin'];
  for (const name of names) {
    for (const folder of folders) {
      const path = join(folder, name);
      try {
        await access(path, constants.X_OK);
        return path;
      } catch {
        // Not in this folder; try the next one.
      }
    }
  }
  const message = `${names.join(' / ')} not found: apt-get install -y ${debianPackage}`;
  if (process.env.CI === 'true') throw new Error(`${message} (required under CI=true)`);
  process.stderr.write(`\n!!! SKIPPED: ${message}\n\n`);
  t.skip(message);
  return undefined;
}

/** A port that was free a moment ago, for servers that cannot report the one they got. */
export { freePort } from '../../scripts/mariadb-pair.js';

export interface Service {
  child: ChildProcess;
  /** stdout and stderr so far (the last 64 KB), for failure messages. */
  output: () => string;
  /** SIGKILL now; resolves once the process is gone. */
  kill: () => Promise<void>;
}

/** Starts a server process that is stopped by its PID when the test ends. */
export function startService(t: TestContext, command: string, args: string[]): Service {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-65_536));
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = once(child, 'close');
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  t.after(kill);
  return { child, output: () => output, kill };
}

/** Polls `read` until it returns a value (not undefined), giving up after `limitMs`. */
export async function pollFor<T>(
  what: string,
  read: () => Promise<T | undefined>,
  limitMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const value = await read().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}
