import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy on 127.0.0.1 with a random port, forwarding every connection to
 * `targetHost:targetPort`. `pause()` simulates the target becoming unreachable: every open
 * connection (both sides) is destroyed and new ones are accepted and destroyed at once, so
 * clients see resets rather than hangs. `resume()` forwards again, on the same port.
 */
export interface TcpProxy {
  port: number;
  /** Connections accepted and forwarded so far. */
  readonly forwarded: number;
  /** Connections refused (accepted and destroyed) while paused. */
  readonly refused: number;
  /** Connections open right now. */
  readonly open: number;
  pause(): void;
  resume(): void;
  close(): Promise<void>;
}

export async function startTcpProxy(
  targetPort: number,
  targetHost = '127.0.0.1',
): Promise<TcpProxy> {
  const sockets = new Set<Socket>();
  let paused = false;
  let forwarded = 0;
  let refused = 0;
  const track = (socket: Socket): void => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    // A reset on either side must not crash the test process.
    socket.on('error', () => socket.destroy());
  };
  const server: Server = createServer((client) => {
    if (paused) {
      refused += 1;
      client.on('error', () => undefined);
      client.destroy();
      return;
    }
    forwarded += 1;
    const upstream = connect({ host: targetHost, port: targetPort });
    track(client);
    track(upstream);
    client.pipe(upstream);
    upstream.pipe(client);
    client.once('close', () => upstream.destroy());
    upstream.once('close', () => client.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    port,
    get forwarded() {
      return forwarded;
    },
    get refused() {
      return refused;
    },
    get open() {
      return sockets.size;
    },
    pause() {
      paused = true;
      for (const socket of sockets) socket.destroy();
    },
    resume() {
      paused = false;
    },
    async close() {
      paused = true;
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port free right now: listen on port 0, read it, close. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Whether a TCP connection to 127.0.0.1:`port` succeeds. */
export async function accepts(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.setTimeout(1_000);
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.once('timeout', () => done(false));
  });
}
