/**
 * A baseline server for the benchmark, in a process of its own (so the load generator never
 * shares its event loop). Prints `listening <url>` on stdout; stopped by its parent with SIGTERM.
 * (The service itself runs as `node dist/main.js serve`.)
 *
 *   tsx bench/serve.ts static <file>            bare node:http answering the file's bytes
 *   tsx bench/serve.ts hello                    bare node:http answering `ok`
 */
import { readFileSync } from 'node:fs';
import { createServer, type RequestListener } from 'node:http';

const [mode, argument = ''] = process.argv.slice(2);

function listenBare(handler: RequestListener): Promise<string> {
  const server = createServer(handler);
  // The same keep-alive as the app, so both keep their connections for the whole run.
  server.keepAliveTimeout = 65_000;
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      resolve(`http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`);
    });
  });
}

let url: string;
if (mode === 'static') {
  const body = readFileSync(argument);
  url = await listenBare((_request, response) => {
    response.writeHead(200, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': body.length,
    });
    response.end(body);
  });
} else if (mode === 'hello') {
  url = await listenBare((_request, response) => {
    response.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': 2 });
    response.end('ok');
  });
} else {
  throw new Error(`unknown mode ${String(mode)}`);
}
process.once('SIGTERM', () => process.exit(0));
console.log(`listening ${url}`);
