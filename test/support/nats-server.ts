import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serverProcess } from './server-process.js';
import { accepts, freePort } from './tcp-proxy.js';

/**
 * A private NATS server (JetStream on, file storage in a temp directory) run as a child
 * process on 127.0.0.1 and a free port, for tests that stop and restart the broker without
 * touching the machine's shared one. `restart()` reuses the port and the store directory, so
 * streams, consumers and stored messages survive it as they would a real broker restart.
 */
export interface PrivateNatsServer {
  port: number;
  url: string;
  storeDir: string;
  /** The current process (undefined while stopped). */
  readonly proc: ChildProcess | undefined;
  /** Everything every run of the server printed (tail). */
  output(): string;
  /** SIGTERM, wait for the process to exit and the port to refuse connections. */
  stop(): Promise<void>;
  /** Starts it again on the same port and store directory; waits until it accepts clients. */
  start(): Promise<void>;
  /** stop() then start(). */
  restart(): Promise<void>;
  /** Stops it (SIGKILL if it ignores SIGTERM) and removes the store directory. */
  dispose(): Promise<void>;
}

const BIN = process.env.ION_TEST_NATS_SERVER_BIN ?? 'nats-server';

export async function startNatsServer(timeoutMs = 30_000): Promise<PrivateNatsServer> {
  const storeDir = await mkdtemp(join(tmpdir(), 'ion-nats-'));
  const port = await freePort();
  const server = serverProcess({
    name: 'nats-server',
    port,
    timeoutMs,
    pollMs: 50,
    spawn: () =>
      spawn(BIN, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], {
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    // Ready once it logged so (JetStream is enabled before that) and the port accepts.
    ready: async (printed) => printed.includes('Server is ready') && (await accepts(port)),
    killAfterMs: 10_000,
    kill: (child) => child.kill('SIGKILL'),
  });

  await server.start().catch(async (err: unknown) => {
    await rm(storeDir, { recursive: true, force: true });
    throw err;
  });

  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    storeDir,
    get proc() {
      return server.proc;
    },
    output: server.output,
    stop: server.stop,
    start: server.start,
    async restart() {
      await server.stop();
      await server.start();
    },
    async dispose() {
      await server.stop().catch(() => undefined);
      await rm(storeDir, { recursive: true, force: true });
    },
  };
}
