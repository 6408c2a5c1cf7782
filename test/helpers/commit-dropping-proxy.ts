import { createServer, connect, type AddressInfo, type Socket } from 'node:net';

/**
 * A TCP proxy in front of a MySQL/MariaDB server that, once armed, lets the next `COMMIT`
 * through to the server and then drops its answer: the client's connection is cut after the
 * server has committed, so the client cannot know the write landed (a reply lost on the way,
 * like a commit that finished after its client gave up). Everything else passes unchanged.
 * Reads the client's packets (3-byte length, sequence id, payload; COM_QUERY = 0x03), so it
 * needs a connection without TLS or compression, which is what the app's pool opens.
 */
export interface CommitDroppingProxy {
  port: number;
  /** Drop the answer to the next COMMIT; resolves once one was dropped. */
  armOnce(): Promise<void>;
  close(): Promise<void>;
}

const COM_QUERY = 0x03;

export async function startCommitDroppingProxy(
  targetHost: string,
  targetPort: number,
): Promise<CommitDroppingProxy> {
  let armed: (() => void) | undefined;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(targetPort, targetHost);
    sockets.add(client).add(upstream);
    let pending = Buffer.alloc(0);
    let dropping = false;
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', closeBoth).on('close', closeBoth);
    upstream.on('error', closeBoth).on('close', closeBoth);
    client.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      // Forward whole packets, each checked for a COMMIT.
      while (pending.length >= 4) {
        const length = pending.readUIntLE(0, 3);
        if (pending.length < 4 + length) break;
        const packet = pending.subarray(0, 4 + length);
        pending = pending.subarray(4 + length);
        const isCommit =
          length > 1 &&
          packet[4] === COM_QUERY &&
          /^\s*commit\s*;?\s*$/i.test(packet.subarray(5).toString('latin1'));
        if (isCommit && armed !== undefined && !dropping) {
          dropping = true;
          const fired = armed;
          armed = undefined;
          // The server's answer (committed) goes nowhere; then the client's line goes dead.
          upstream.removeAllListeners('data');
          upstream.on('data', () => {
            client.destroy();
            fired();
          });
        }
        upstream.write(packet);
      }
    });
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    armOnce: () =>
      new Promise<void>((resolve) => {
        armed = resolve;
      }),
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
