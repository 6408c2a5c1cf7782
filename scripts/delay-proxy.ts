/**
 * A TCP proxy that delays every chunk, both ways, by a latency ± jitter read from a JSON file
 * (`{"delayMs": 100, "jitterMs": 20}`) at start and again on SIGHUP. The fault lab runs one in
 * front of each database host: this kernel has no netem, so latency is made here. Order within a
 * connection is kept (a chunk never overtakes the one before it), as TCP would.
 *
 *   tsx scripts/delay-proxy.ts LISTEN_HOST:PORT TARGET_HOST:PORT SETTINGS_FILE
 */
import { existsSync, readFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';

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

/** Copies `from` to `to`, each chunk `delay()` ms later but never before the previous one. */
function pipeDelayed(from: Socket, to: Socket, delay: () => number): void {
  let last = 0;
  from.on('data', (chunk) => {
    const wait = delay();
    if (wait === 0 && last <= Date.now()) {
      to.write(chunk);
      return;
    }
    const at = Math.max(last, Date.now() + wait);
    last = at;
    setTimeout(() => to.write(chunk), at - Date.now());
  });
  // The close travels with the same delay, after the data it followed.
  from.on('end', () => setTimeout(() => to.end(), Math.max(0, last - Date.now())));
  from.on('error', () => to.destroy());
  from.on('close', () => {
    if (!from.readableEnded) to.destroy();
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
  const delay = () =>
    settings.delayMs === 0 ? 0 : settings.delayMs + (Math.random() * 2 - 1) * settings.jitterMs;
  const server = createServer({ noDelay: true }, (client) => {
    const upstream = connect({ ...target, noDelay: true });
    pipeDelayed(client, upstream, delay);
    pipeDelayed(upstream, client, delay);
  });
  server.listen(listen.port, listen.host, () => {
    console.log(`delay proxy ${listenText} -> ${targetText}`);
  });
}
