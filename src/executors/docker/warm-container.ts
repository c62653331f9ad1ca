import { chmod, cp, mkdir, readdir, rename, rm } from 'node:fs/promises';
import type { Server, Socket } from 'node:net';
import { join } from 'node:path';
import type Docker from 'dockerode';
import type { Logger } from 'pino';
import { WarmSlot, type WarmSlotOptions } from '../warm/warm-slot.js';
import { CONTAINER_JOB_DIR } from './container-spec.js';
import { engineMessage, statusOf } from './engine.js';
import { within } from './log-demux.js';
import { FrameSplitter } from './warm-frames.js';

/** Where a warm container finds its control socket's directory. */
export const CONTAINER_CONTROL_DIR = '/ion-control';
/** The control socket inside a warm container (`ION_CONTROL_SOCKET`). */
export const CONTAINER_CONTROL_SOCKET = `${CONTAINER_CONTROL_DIR}/control.sock`;

/** A podman wait that missed the exit is caught by reading the state this often. */
const EXIT_POLL_MS = 5000;

export interface WarmContainerOptions extends WarmSlotOptions {
  docker: Docker;
  container: Docker.Container;
  /** The attach stream (multiplexed stdout and stderr), opened before the start. */
  output: NodeJS.ReadableStream;
  /** Listens on the control socket; the module's first connection is the channel. */
  server: Server;
  /** The slot's host directory: `<root>/ion` is mounted at `/ion`, `<root>/ion/in` read-only. */
  root: string;
  /** The control socket's host directory (mounted at {@link CONTAINER_CONTROL_DIR}). */
  controlDir: string;
  stopGraceMs: number;
  /** The container runs as a non-root user: `out/` must be world-writable. */
  openOutputs: boolean;
  memoryBytes?: number;
  logger?: Logger;
}

/**
 * One warm slot as a long-lived container. Its mounts are fixed when it is created, so it
 * owns a host directory S (`<root>/ion`) mounted at `/ion`, with `S/in` mounted again
 * read-only at `/ion/in` as in a cold run. For each job the prepared job directory's entries
 * are moved (renamed: the slot lives on the job directories' filesystem) into S, and after
 * it `out/` and the inputs move back, so collect reads the job's own directory as for any
 * run, and S is emptied. `S/in` itself is never replaced: the read-only mount holds its inode.
 *
 * The control channel is a unix socket Ion listens on in a directory mounted at
 * `/ion-control` (the container cannot inherit a descriptor); stdout and stderr come from
 * the Engine API's attach stream, opened before the start so no byte is missed.
 */
export class WarmContainer extends WarmSlot {
  readonly noun = 'warm container';
  readonly ended: Promise<void>;
  private resolveEnded: () => void = () => undefined;
  private readonly outputEnded: Promise<unknown>;
  private exited = false;
  private killing = false;
  private readonly exitHint = new Hint();

  constructor(private readonly options: WarmContainerOptions) {
    super(options);
    const frames = new FrameSplitter(
      (chunk) => this.streams[0].push(chunk),
      (chunk) => this.streams[1].push(chunk),
    );
    const { output, server } = options;
    output.on('data', (chunk: Buffer) => frames.push(chunk));
    this.outputEnded = new Promise((resolve) => {
      output.once('end', resolve);
      output.once('close', resolve);
      output.once('error', resolve);
    });
    server.on('connection', (socket: Socket) => {
      // One channel per container: a second connection (another process in it) is refused.
      if (this.control !== null) {
        socket.destroy();
        return;
      }
      this.listen(socket);
      // The module's end closes its socket: look at the container's state at once rather
      // than wait for an engine's wait that may lag (podman) or the slow poll.
      socket.once('close', () => this.exitHint.fire());
      server.close();
    });
    this.ended = new Promise<void>((resolve) => (this.resolveEnded = resolve));
  }

  get id(): string {
    return this.options.container.id.slice(0, 12);
  }

  get alive(): boolean {
    return !this.exited;
  }

  /** The container runs: watch for its end. */
  begin(): void {
    void this.watch();
  }

  /** The container never started: remove it and end the slot. */
  async abandon(): Promise<void> {
    this.exited = true;
    (this.options.output as unknown as { destroy?: () => void }).destroy?.();
    await this.end(null, null);
  }

  private async watch(): Promise<void> {
    const code = await awaitExit(this.options.container, this.exitHint).catch(() => null);
    this.exited = true;
    await within(this.outputEnded, 1000);
    await this.end(code, this.killing ? null : await this.oom());
  }

  private async end(code: number | null, oom: string | null): Promise<void> {
    for (const stream of this.streams) stream.flush();
    this.control?.destroy();
    this.options.server.close();
    await this.options.container.remove({ force: true, v: true }).catch((err: unknown) => {
      if (statusOf(err) !== 404)
        this.options.logger?.warn(
          { container: this.id, err: engineMessage(err) },
          'could not remove a warm container',
        );
    });
    this.emit({
      kind: 'exit',
      code,
      signal: null,
      ...(oom === null ? {} : { failure: { code: 'module_oom', message: oom } }),
    });
    this.resolveEnded();
  }

  private async oom(): Promise<string | null> {
    try {
      const { State } = await this.options.container.inspect();
      if (!State.OOMKilled) return null;
      const limit = this.options.memoryBytes;
      return `the module ran out of memory${limit === undefined ? '' : ` (limit ${limit} bytes)`} and was killed`;
    } catch {
      return null;
    }
  }

  /** SIGTERM, SIGKILL after the grace period; settles when the container is gone. */
  async kill(): Promise<void> {
    if (!this.exited) {
      this.killing = true;
      this.signal('SIGTERM');
      const timer = setTimeout(() => this.signal('SIGKILL'), this.options.stopGraceMs);
      await this.ended;
      clearTimeout(timer);
    }
    await this.ended;
  }

  async stop(): Promise<void> {
    clearTimeout(this.idleTimer);
    if (!this.exited) {
      if (this.control === null) return this.kill();
      this.control.end();
      const timer = setTimeout(() => void this.kill(), this.options.stopGraceMs);
      await this.ended;
      clearTimeout(timer);
    }
    await this.ended;
  }

  async dispose(): Promise<void> {
    await rm(this.options.root, { recursive: true, force: true }).catch(() => undefined);
    await rm(this.options.controlDir, { recursive: true, force: true }).catch(() => undefined);
  }

  private signal(name: 'SIGTERM' | 'SIGKILL'): void {
    if (this.exited) return;
    this.options.container.kill({ signal: name }).catch(() => undefined); // 409: it ended
  }

  private get jobDir(): string {
    return join(this.options.root, 'ion');
  }

  /** Moves the prepared job directory's entries into the slot's `/ion`. */
  override async enter(workDir: string): Promise<string> {
    const slot = this.jobDir;
    for (const name of await readdir(join(workDir, 'in')))
      await move(join(workDir, 'in', name), join(slot, 'in', name));
    for (const name of await readdir(workDir))
      if (name !== 'in') await move(join(workDir, name), join(slot, name));
    if (this.options.openOutputs)
      for (const dir of ['out', join('out', 'data'), join('out', 'events')])
        await chmod(join(slot, dir), 0o777).catch(() => undefined);
    return CONTAINER_JOB_DIR;
  }

  /** Inputs and `out/` back to the job's directory; whatever else the job left is removed. */
  override async leave(workDir: string): Promise<void> {
    const slot = this.jobDir;
    await mkdir(join(workDir, 'in'), { recursive: true });
    for (const name of await readdir(join(slot, 'in')))
      await move(join(slot, 'in', name), join(workDir, 'in', name));
    await rm(join(workDir, 'out'), { recursive: true, force: true });
    const outputs = await readdir(join(slot, 'out')).catch(() => null);
    if (outputs !== null) await move(join(slot, 'out'), join(workDir, 'out'));
    for (const name of await readdir(slot))
      if (name !== 'in') await rm(join(slot, name), { recursive: true, force: true });
  }
}

/** Renames, or copies and removes across filesystems (a slot directory elsewhere). */
async function move(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    await cp(from, to, { recursive: true, preserveTimestamps: true });
    await rm(from, { recursive: true, force: true });
  }
}

/** A wake-up for a sleeping poll: after it fires, sleeps are short for a few seconds. */
class Hint {
  private firedAt = -Infinity;
  private wake: (() => void) | null = null;

  fire(): void {
    this.firedAt = performance.now();
    this.wake?.();
  }

  sleep(ms: number): Promise<void> {
    const recent = performance.now() - this.firedAt < 10_000;
    return new Promise((resolve) => {
      const timer = setTimeout(done, recent ? 100 : ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }
}

/**
 * Waits for the container to exit: the engine's wait, and a slow poll of its state (podman
 * has been seen not to answer a wait for a container that exited as the wait arrived).
 */
async function awaitExit(container: Docker.Container, hint: Hint): Promise<number | null> {
  const abort = new AbortController();
  let polling = true;
  const poll = async (): Promise<number | null> => {
    while (polling) {
      // After the hint (the module closed its socket) the state is read often, for a while.
      await hint.sleep(EXIT_POLL_MS);
      if (!polling) break;
      const { State } = await container.inspect();
      if (!State.Running && State.Status !== 'created') return State.ExitCode ?? null;
    }
    return null;
  };
  try {
    const waited = container.wait({ abortSignal: abort.signal }) as Promise<{
      StatusCode?: number;
    }>;
    return await Promise.race([waited.then((w) => w.StatusCode ?? null), poll()]);
  } finally {
    polling = false;
    abort.abort();
  }
}
