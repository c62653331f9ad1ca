import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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
  let proc: ChildProcess | undefined;
  let output = '';
  let exited: Promise<void> = Promise.resolve();

  const launch = async (): Promise<void> => {
    if (proc !== undefined) throw new Error('nats-server is already running');
    const child = spawn(BIN, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    proc = child;
    const collect = (chunk: Buffer): void => {
      output = (output + chunk.toString()).slice(-20_000);
    };
    child.stdout?.on('data', collect);
    child.stderr?.on('data', collect);
    let exitReason: string | undefined;
    exited = new Promise<void>((resolve) => {
      child.once('exit', (code, signal) => {
        exitReason = `exited with ${signal ?? `code ${code}`}`;
        resolve();
      });
      child.once('error', (err) => {
        exitReason = `failed to spawn: ${err.message}`;
        resolve();
      });
    });
    const runStart = output.length;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (exitReason !== undefined) {
        proc = undefined;
        throw new Error(`nats-server ${exitReason} before it was ready:\n${output}`);
      }
      // Ready once it logged so (JetStream is enabled before that) and the port accepts.
      if (output.slice(runStart).includes('Server is ready') && (await accepts(port))) return;
      if (Date.now() > deadline) {
        await halt();
        throw new Error(
          `nats-server was not ready on port ${port} within ${timeoutMs}ms:\n${output}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };

  const halt = async (): Promise<void> => {
    const child = proc;
    if (child === undefined) return;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killTimer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(killTimer);
    }
    proc = undefined;
    // The process is gone; make sure nothing answers on the port any more.
    const deadline = Date.now() + timeoutMs;
    while (await accepts(port)) {
      if (Date.now() > deadline)
        throw new Error(`port ${port} still accepts after nats-server exited`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };

  await launch().catch(async (err: unknown) => {
    await rm(storeDir, { recursive: true, force: true });
    throw err;
  });

  return {
    port,
    url: `nats://127.0.0.1:${port}`,
    storeDir,
    get proc() {
      return proc;
    },
    output: () => output,
    stop: halt,
    start: launch,
    async restart() {
      await halt();
      await launch();
    },
    async dispose() {
      await halt().catch(() => undefined);
      await rm(storeDir, { recursive: true, force: true });
    },
  };
}
