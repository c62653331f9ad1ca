import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';

/**
 * Where module processes are started from. `child_process.spawn` forks the calling process
 * synchronously: in a Node process of 150 MB that holds its thread for milliseconds per job,
 * which on Ion's main thread is time taken from the API, the dispatchers and every other
 * job. {@link ThreadSpawner} does the spawning on a worker thread instead, so the main thread
 * only posts a message; {@link InlineSpawner} spawns in place (the reference behaviour).
 */

/** What a spawned module process looks like to the executor, wherever it was spawned. */
export interface SpawnedChild {
  readonly pid?: number | undefined;
  /** `exit` (code, signal) once the main process ended; `error` (err) if it never started. */
  once(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  once(event: 'error', listener: (err: Error) => void): this;
}

export interface SpawnRequest {
  program: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
  /** The descriptor given to the child as stdout and stderr (a log file opened by Ion). */
  outputFd: number;
}

export interface Spawner {
  /**
   * Starts the process in a process group of its own (`detached`). Rejects like
   * `child_process.spawn` throws (an error with a `code`); a program that cannot be started
   * resolves with a child that emits `error`.
   */
  spawn(request: SpawnRequest): Promise<SpawnedChild>;
  /** Stops the spawner's resources once no run needs them. Idempotent. */
  close(): Promise<void>;
}

function spawnDetached(request: SpawnRequest) {
  return spawn(request.program, request.args, {
    cwd: request.cwd,
    env: request.env,
    detached: true,
    // The child writes its output straight into the log file: nothing passes through Ion.
    stdio: ['ignore', request.outputFd, request.outputFd],
  });
}

/** Spawns on the calling thread. */
export class InlineSpawner implements Spawner {
  spawn(request: SpawnRequest): Promise<SpawnedChild> {
    return Promise.resolve(spawnDetached(request));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** Messages from the spawner thread, one `id` per request. */
type ThreadMessage =
  | { id: number; type: 'spawned'; pid: number }
  | { id: number; type: 'threw' | 'error'; code: string | undefined; message: string }
  | { id: number; type: 'exit'; code: number | null; signal: NodeJS.Signals | null };

/**
 * The spawner thread's code, plain JavaScript evaluated as a script (no loader or build step
 * involved). It spawns what it is asked to and reports the pid, a start error and the exit.
 */
const THREAD_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { spawn } = require('node:child_process');
parentPort.on('message', (m) => {
  let child;
  try {
    child = spawn(m.program, m.args, {
      cwd: m.cwd, env: m.env, detached: true, stdio: ['ignore', m.outputFd, m.outputFd],
    });
  } catch (err) {
    parentPort.postMessage({ id: m.id, type: 'threw', code: err && err.code, message: String(err && err.message) });
    return;
  }
  child.once('error', (err) => {
    if (child.pid === undefined)
      parentPort.postMessage({ id: m.id, type: 'error', code: err && err.code, message: String(err && err.message) });
  });
  child.once('exit', (code, signal) => parentPort.postMessage({ id: m.id, type: 'exit', code, signal }));
  if (child.pid !== undefined) parentPort.postMessage({ id: m.id, type: 'spawned', pid: child.pid });
});
`;

class ThreadChild extends EventEmitter implements SpawnedChild {
  pid: number | undefined;
}

function errorWithCode(message: string, code: string | undefined): Error {
  return Object.assign(new Error(message), code === undefined ? {} : { code });
}

/**
 * Spawns on one worker thread, started on first use. Descriptors are process-wide, so the
 * log file Ion opened is handed to the child by number. If the thread itself dies (it
 * should not), every process it started is killed as a group and reported as ended by
 * SIGKILL, pending spawns are rejected, and the next spawn starts a new thread.
 */
export class ThreadSpawner implements Spawner {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (child: SpawnedChild) => void; reject: (err: Error) => void; child: ThreadChild }
  >();
  private readonly running = new Map<number, ThreadChild>();

  spawn(request: SpawnRequest): Promise<SpawnedChild> {
    const worker = this.thread();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, child: new ThreadChild() });
      this.holdWhileBusy();
      worker.postMessage({ id, ...request });
    });
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    if (worker !== null) await worker.terminate();
  }

  private thread(): Worker {
    if (this.worker !== null) return this.worker;
    const worker = new Worker(THREAD_SOURCE, { eval: true, stdout: false, stderr: false });
    // Idle, it must not keep the process alive; while a run is in progress it does.
    worker.unref();
    worker.on('message', (m: ThreadMessage) => this.onMessage(m));
    worker.once('error', (err) => this.lost(worker, err));
    worker.once('exit', () => this.lost(worker, new Error('the spawner thread exited')));
    this.worker = worker;
    return worker;
  }

  private holdWhileBusy(): void {
    if (this.pending.size + this.running.size > 0) this.worker?.ref();
    else this.worker?.unref();
  }

  private onMessage(m: ThreadMessage): void {
    try {
      this.handle(m);
    } finally {
      this.holdWhileBusy();
    }
  }

  private handle(m: ThreadMessage): void {
    const waiting = this.pending.get(m.id);
    const child = waiting?.child ?? this.running.get(m.id);
    if (child === undefined) return;
    switch (m.type) {
      case 'spawned':
        this.pending.delete(m.id);
        this.running.set(m.id, child);
        child.pid = m.pid;
        waiting?.resolve(child);
        return;
      case 'threw':
        this.pending.delete(m.id);
        waiting?.reject(errorWithCode(m.message, m.code));
        return;
      case 'error':
        this.pending.delete(m.id);
        waiting?.resolve(child);
        // After the caller attached its listeners (it awaits the promise first).
        setImmediate(() => child.emit('error', errorWithCode(m.message, m.code)));
        return;
      case 'exit':
        this.running.delete(m.id);
        child.emit('exit', m.code, m.signal);
        return;
    }
  }

  private lost(worker: Worker, err: Error): void {
    if (this.worker === worker) this.worker = null;
    for (const [id, { reject }] of this.pending) {
      this.pending.delete(id);
      reject(errorWithCode(`cannot spawn: ${err.message}`, 'ERR_SPAWNER_LOST'));
    }
    for (const [id, child] of this.running) {
      this.running.delete(id);
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // ESRCH: gone already.
        }
      }
      child.emit('exit', null, 'SIGKILL');
    }
  }
}
