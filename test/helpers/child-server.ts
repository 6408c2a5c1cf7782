import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { TestContext } from 'node:test';
import { REPO_ROOT } from './paths.js';

export interface ChildServer {
  child: ChildProcess;
  url: string;
  /** Every stdout line so far (JSON log lines). */
  lines: string[];
  /** Sends SIGTERM (or `signalName`) and resolves with the exit code. */
  stop(signalName?: NodeJS.Signals): Promise<number | null>;
}

const START_TIMEOUT_MS = 20_000;

/**
 * Starts a server process and resolves once it logs its URL. The process (and, when
 * `detached`, its whole group, e.g. npm and its child) is ended when the test ends.
 */
export async function startChildServer(
  t: TestContext,
  command: string,
  args: string[],
  options: { cwd: string; env: NodeJS.ProcessEnv; detached?: boolean; uid?: number; gid?: number },
): Promise<ChildServer> {
  const detached = options.detached ?? false;
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env,
    detached,
    // Another user (a test run as root starts the server as nobody, whom permissions bind).
    ...(options.uid !== undefined && { uid: options.uid }),
    ...(options.gid !== undefined && { gid: options.gid }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const signal = (name: NodeJS.Signals) => {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    process.kill(detached ? -child.pid : child.pid, name);
  };
  // 'close', not 'exit': it waits for stdout too, which a child of npm may hold after npm exits.
  const exited = once(child, 'close').then(([code]) => code as number | null);
  t.after(async () => {
    signal('SIGKILL');
    await exited;
  });

  const lines: string[] = [];
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`server did not start: ${stderr}`)),
      START_TIMEOUT_MS,
    );
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line);
      const match = /"url":"([^"]+)"/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening: ${stderr}`));
    });
  });
  return {
    child,
    url,
    lines,
    stop: async (signalName = 'SIGTERM') => {
      signal(signalName);
      return exited;
    },
  };
}

/**
 * `node dist/main.js serve` (the built code, as deployed) in `cwd` on a free loopback port,
 * with only PATH from this environment: every other setting is the test's own `env`.
 */
export function startBuiltServer(
  t: TestContext,
  cwd: string,
  env: NodeJS.ProcessEnv,
  options: { uid?: number; gid?: number } = {},
): Promise<ChildServer> {
  return startChildServer(t, process.execPath, [join(REPO_ROOT, 'dist/main.js'), 'serve'], {
    cwd,
    env: { PATH: process.env.PATH, PORT: '0', HOST: '127.0.0.1', ...env },
    ...options,
  });
}
