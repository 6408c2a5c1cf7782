import { execFile } from 'node:child_process';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';
import { requireBinary } from './external-services.js';

const run = promisify(execFile);
const PREFIX = 'users-api-test-';

/** A network namespace joined to this one by a veth pair: a client from another network. */
export interface NetworkNamespace {
  /** This side's address: bind a server to it to be reachable from the namespace. */
  hostAddress: string;
  /** The namespace's address, the source of every connection made from inside it. */
  guestAddress: string;
  /** Runs a command inside the namespace. */
  run(command: string, args: string[]): Promise<{ stdout: string; stderr: string }>;
}

/**
 * A namespace with a /30 from TEST-NET-3 (203.0.113.0/24: documentation only, never routed, in
 * no private range), deleted when the test ends (which removes its veth pair too). Needs root
 * (CAP_NET_ADMIN): without it, under CI=true the test fails; locally it is skipped loudly.
 */
export async function createNetworkNamespace(
  t: TestContext,
): Promise<NetworkNamespace | undefined> {
  const ip = await requireBinary(t, ['ip'], 'iproute2');
  if (ip === undefined) return undefined;
  await removeStaleNamespaces(ip);
  const name = `${PREFIX}${process.pid}-${Date.now().toString(36)}`;
  try {
    await run(ip, ['netns', 'add', name]);
  } catch (error) {
    const message = `cannot create a network namespace (needs root): ${(error as Error).message.trim()}`;
    if (process.env.CI === 'true') {
      throw new Error(`${message} (required under CI=true)`, { cause: error });
    }
    process.stderr.write(`\n!!! SKIPPED: ${message}\n\n`);
    t.skip(message);
    return undefined;
  }
  t.after(() => run(ip, ['netns', 'del', name]));
  const block = await freeBlock(ip);
  const [hostAddress, guestAddress] = [`203.0.113.${block + 1}`, `203.0.113.${block + 2}`];
  // Interface names hold at most 15 characters.
  const [outside, inside] = ['a', 'b'].map((end) => `uat${process.pid % 1e6}${block}${end}`);
  for (const args of [
    ['link', 'add', outside!, 'type', 'veth', 'peer', 'name', inside!],
    ['link', 'set', inside!, 'netns', name],
    ['addr', 'add', `${hostAddress}/30`, 'dev', outside!],
    ['link', 'set', outside!, 'up'],
    ['-n', name, 'addr', 'add', `${guestAddress}/30`, 'dev', inside!],
    ['-n', name, 'link', 'set', inside!, 'up'],
    ['-n', name, 'link', 'set', 'lo', 'up'],
  ]) {
    await run(ip, args);
  }
  return {
    hostAddress,
    guestAddress,
    run: (command, args) => run(ip, ['netns', 'exec', name, command, ...args]),
  };
}

/** A /30 of 203.0.113.0/24 that no interface here uses (another test may hold one). */
async function freeBlock(ip: string): Promise<number> {
  const { stdout } = await run(ip, ['-4', '-o', 'addr', 'show']);
  const used = new Set(
    [...stdout.matchAll(/inet 203\.0\.113\.(\d+)\//g)].map((match) => Number(match[1]) & ~3),
  );
  const start = Math.floor(Math.random() * 64);
  for (let step = 0; step < 64; step += 1) {
    const block = ((start + step) % 64) * 4;
    if (!used.has(block)) return block;
  }
  throw new Error('every /30 of 203.0.113.0/24 is in use');
}

/** Namespaces left by a test process that was killed before its cleanup ran. */
async function removeStaleNamespaces(ip: string): Promise<void> {
  const { stdout } = await run(ip, ['netns', 'list']);
  for (const match of stdout.matchAll(new RegExp(`^${PREFIX}(\\d+)-\\S+`, 'gm'))) {
    if (isAlive(Number(match[1]))) continue;
    await run(ip, ['netns', 'del', match[0]]);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
