import type { ChildProcess } from 'node:child_process';
import { accepts } from './tcp-proxy.js';

/** How to run one private server process (a test broker): what differs between them. */
export interface ServerProcessSpec {
  /** For messages: `nats-server`, `RabbitMQ node ion-soak-…@localhost`. */
  name: string;
  /** The port it serves on: ready means it accepts there, stopped that it refuses. */
  port: number;
  /** Bound on a start and on a stop. */
  timeoutMs: number;
  /** How often readiness (and the port's release) is looked at. */
  pollMs: number;
  spawn(): ChildProcess;
  /** Whether it is ready, given what this run printed so far. */
  ready(printed: string): Promise<boolean>;
  /** After SIGTERM, how long before {@link kill}. */
  killAfterMs: number;
  /** The last resort when SIGTERM was not enough. */
  kill(child: ChildProcess): void;
}

/** One server process that can be started, stopped and started again. */
export interface ServerProcess {
  /** The current process (undefined while stopped). */
  readonly proc: ChildProcess | undefined;
  /** Everything every run printed (tail). */
  output: () => string;
  /** Spawns it and waits until it is ready; throws with its output when it exits first. */
  start: () => Promise<void>;
  /** SIGTERM (then the spec's kill), waits for the exit and for the port to refuse. */
  stop: () => Promise<void>;
}

const TAIL = 20_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export function serverProcess(spec: ServerProcessSpec): ServerProcess {
  let proc: ChildProcess | undefined;
  let output = '';
  let exited: Promise<void> = Promise.resolve();

  const stop = async (): Promise<void> => {
    const child = proc;
    if (child === undefined) return;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const killTimer = setTimeout(() => spec.kill(child), spec.killAfterMs);
      await exited;
      clearTimeout(killTimer);
    }
    proc = undefined;
    // The process is gone; make sure nothing answers on the port any more.
    const deadline = Date.now() + spec.timeoutMs;
    while (await accepts(spec.port)) {
      if (Date.now() > deadline)
        throw new Error(`port ${spec.port} still accepts after ${spec.name} exited`);
      await sleep(Math.min(100, spec.pollMs));
    }
  };

  const start = async (): Promise<void> => {
    if (proc !== undefined) throw new Error(`${spec.name} is already running`);
    const child = spec.spawn();
    proc = child;
    let printed = '';
    const collect = (chunk: Buffer): void => {
      output = (output + chunk.toString()).slice(-TAIL);
      printed = (printed + chunk.toString()).slice(-TAIL);
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
    const deadline = Date.now() + spec.timeoutMs;
    for (;;) {
      if (exitReason !== undefined) {
        proc = undefined;
        throw new Error(`${spec.name} ${exitReason} before it was ready:\n${output}`);
      }
      if (await spec.ready(printed)) return;
      if (Date.now() > deadline) {
        await stop();
        throw new Error(
          `${spec.name} was not ready on port ${spec.port} within ${spec.timeoutMs}ms:\n${output}`,
        );
      }
      await sleep(spec.pollMs);
    }
  };

  return {
    get proc() {
      return proc;
    },
    output: () => output,
    start,
    stop,
  };
}
