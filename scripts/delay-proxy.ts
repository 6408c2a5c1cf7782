/**
 * A TCP proxy that delays every chunk, both ways, by a latency ± jitter read from a JSON file
 * (`{"delayMs": 100, "jitterMs": 20}`) at start and again on SIGHUP. The fault lab runs one in
 * front of each database host: this kernel has no netem, so latency is made here. Order within a
 * connection is kept (a chunk never overtakes the one before it), as TCP would.
 *
 *   tsx scripts/delay-proxy.ts LISTEN_HOST:PORT TARGET_HOST:PORT SETTINGS_FILE
 */
import { existsSync, readFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface DelaySettings {
  delayMs: number;
  jitterMs: number;
}

export function readDelaySettings(file: string): DelaySettings {
  if (!existsSync(file)) return { delayMs: 0, jitterMs: 0 };
  const parsed = JSON.parse(readFileSync(file, 'utf8')) as Partial<DelaySettings>;
  const delayMs = Number(parsed.delayMs ?? 0);
  const jitterMs = Number(parsed.jitterMs ?? 0);
  if (!(delayMs >= 0 && jitterMs >= 0 && jitterMs <= delayMs)) {
    throw new Error(`${file}: expected 0 <= jitterMs <= delayMs, got ${JSON.stringify(parsed)}`);
  }
  return { delayMs, jitterMs };
}

/**
 * Copies `from` to `to`, each chunk `delay()` ms after it arrived but never before the one ahead
 * of it. One queue and one timer per direction: a timer per chunk does not keep order (Node
 * orders timers of equal expiry by duration list, not by when they were set, and its loop clock
 * lags Date.now()), and a reordered chunk garbles the byte stream (docs/fault-lab.md).
 */
export function pipeDelayed(from: Socket, to: Socket, delay: () => number): void {
  const queue: { at: number; chunk: Buffer | undefined }[] = [];
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    timer = undefined;
    while (queue.length > 0 && queue[0]!.at <= Date.now()) {
      const { chunk } = queue.shift()!;
      if (to.destroyed) return;
      if (chunk === undefined) {
        // The close travels with the same delay, after the data it followed.
        to.end();
      } else if (!to.write(chunk) && !from.isPaused()) {
        // A slow receiver slows the sender, as TCP's window would, instead of piling up here.
        from.pause();
        to.once('drain', () => from.resume());
      }
    }
    if (queue.length > 0) timer = setTimeout(flush, Math.max(0, queue[0]!.at - Date.now()));
  };
  const push = (chunk: Buffer | undefined) => {
    const last = queue.at(-1)?.at ?? 0;
    queue.push({ at: Math.max(last, Date.now() + delay()), chunk });
    if (timer === undefined) flush();
  };
  from.on('data', (chunk: Buffer) => push(chunk));
  from.on('end', () => push(undefined));
  from.on('error', () => to.destroy());
  from.on('close', () => {
    if (!from.readableEnded) to.destroy();
  });
  to.on('close', () => clearTimeout(timer));
}

/**
 * Listens on `listen` and connects each client to `target`, both ways through `pipeDelayed` with
 * `settings()` read per chunk (so a change applies to connections already open).
 */
export function startDelayProxy(
  listen: { host: string; port: number },
  target: { host: string; port: number },
  settings: () => DelaySettings,
): Promise<Server> {
  const delay = () => {
    const { delayMs, jitterMs } = settings();
    return delayMs === 0 ? 0 : delayMs + (Math.random() * 2 - 1) * jitterMs;
  };
  const server = createServer({ noDelay: true }, (client) => {
    const upstream = connect({ ...target, noDelay: true });
    pipeDelayed(client, upstream, delay);
    pipeDelayed(upstream, client, delay);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve(server));
  });
}

function parseAddress(text: string): { host: string; port: number } {
  const at = text.lastIndexOf(':');
  const port = Number(text.slice(at + 1));
  if (at <= 0 || !Number.isInteger(port)) throw new Error(`expected HOST:PORT, got ${text}`);
  return { host: text.slice(0, at), port };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [listenText, targetText, settingsFile] = process.argv.slice(2);
  if (listenText === undefined || targetText === undefined || settingsFile === undefined) {
    console.error('usage: delay-proxy LISTEN_HOST:PORT TARGET_HOST:PORT SETTINGS_FILE');
    process.exit(2);
  }
  const listen = parseAddress(listenText);
  const target = parseAddress(targetText);
  let settings = readDelaySettings(settingsFile);
  process.on('SIGHUP', () => {
    try {
      settings = readDelaySettings(settingsFile);
      console.log(`delay ${settings.delayMs} ± ${settings.jitterMs} ms`);
    } catch (error) {
      // Keep the settings in force: a bad file must not stop a running lab.
      console.error(`settings not changed: ${(error as Error).message}`);
    }
  });
  await startDelayProxy(listen, target, () => settings);
  console.log(`delay proxy ${listenText} -> ${targetText}`);
}
