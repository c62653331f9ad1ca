import { spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';

/**
 * Where module processes are started from. `child_process.spawn` forks the calling process
 * synchronously: in a Node process of 150 MB that holds its thread for milliseconds per job,
 * which on Ion's main thread is time taken from the API, the dispatchers and every other
 * job. {@link InlineSpawner} spawns in place (the default); {@link ThreadSpawner} spawns on a
 * worker thread, so the main thread only posts a message; {@link ProcessSpawner} spawns from
 * a small launcher process, so the fork also copies a ~40 MB process instead of Ion.
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
  /** The same file by path, for a spawner in another process (it opens it to append). */
  outputPath: string;
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

/** Messages from a remote spawner, one `id` per request. */
type SpawnerMessage =
  | { id: number; type: 'spawned'; pid: number }
  | { id: number; type: 'threw' | 'error'; code: string | undefined; message: string }
  | { id: number; type: 'exit'; code: number | null; signal: NodeJS.Signals | null };

/**
 * The remote spawner's code, plain JavaScript run as a script (no loader or build step
 * involved), for a worker thread (`parentPort`) or a launcher process (`process.send`). It
 * spawns what it is asked to and reports the pid, a start error and the exit. A launcher
 * opens the log file itself (descriptors do not cross processes) and exits with its parent.
 */
function remoteSource(where: 'thread' | 'process'): string {
  const channel =
    where === 'thread'
      ? `const { parentPort } = require('node:worker_threads');
const send = (m) => parentPort.postMessage(m);
const onRequest = (f) => parentPort.on('message', f);`
      : `const send = (m) => { if (process.connected) process.send(m); };
const onRequest = (f) => process.on('message', f);
process.on('disconnect', () => process.exit(0));`;
  const output =
    where === 'thread'
      ? `const open = (m) => m.outputFd; const done = () => {};`
      : `const { openSync, closeSync } = require('node:fs');
const open = (m) => openSync(m.outputPath, 'a');
const done = (fd) => closeSync(fd);`;
  return `
const { spawn } = require('node:child_process');
${channel}
${output}
const failed = (id, type, err) => send({ id, type, code: err && err.code, message: String(err && err.message) });
onRequest((m) => {
  let fd;
  let child;
  try {
    fd = open(m);
  } catch (err) {
    failed(m.id, 'threw', err);
    return;
  }
  try {
    child = spawn(m.program, m.args, {
      cwd: m.cwd, env: m.env, detached: true, stdio: ['ignore', fd, fd],
    });
  } catch (err) {
    done(fd);
    failed(m.id, 'threw', err);
    return;
  }
  done(fd); // the child has its own copy
  child.once('error', (err) => { if (child.pid === undefined) failed(m.id, 'error', err); });
  child.once('exit', (code, signal) => send({ id: m.id, type: 'exit', code, signal }));
  if (child.pid !== undefined) send({ id: m.id, type: 'spawned', pid: child.pid });
});
`;
}

/**
 * A child spawned elsewhere. Its end may be reported before the caller attached its
 * listeners (several IPC messages can arrive in one callback, before the awaiting code
 * resumed), so the end is kept and told to a listener attached later.
 */
class RemoteChild extends EventEmitter implements SpawnedChild {
  pid: number | undefined;
  private ending: [number | null, NodeJS.Signals | null] | null = null;
  private failure: Error | null = null;

  ended(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.listenerCount('exit') > 0) this.emit('exit', code, signal);
    else this.ending = [code, signal];
  }

  failed(err: Error): void {
    if (this.listenerCount('error') > 0) this.emit('error', err);
    else this.failure = err;
  }

  override once(event: string | symbol, listener: (...args: never[]) => void): this {
    super.once(event, listener as (...args: unknown[]) => void);
    if (event === 'exit' && this.ending !== null) {
      const [code, signal] = this.ending;
      this.ending = null;
      this.emit('exit', code, signal);
    } else if (event === 'error' && this.failure !== null) {
      const err = this.failure;
      this.failure = null;
      this.emit('error', err);
    }
    return this;
  }
}

function errorWithCode(message: string, code: string | undefined): Error {
  return Object.assign(new Error(message), code === undefined ? {} : { code });
}

/** The other end of a remote spawner: a worker thread or a launcher process. */
interface Remote {
  post(message: object): void;
  /** Keeps this process alive (while runs are in progress) or not (idle). */
  hold(on: boolean): void;
  stop(): Promise<void>;
}

/**
 * A spawner whose spawning happens elsewhere, started on first use. If the remote dies (it
 * should not), every process it started is killed as a group and reported as ended by
 * SIGKILL, pending spawns are rejected, and the next spawn starts a new remote.
 */
abstract class RemoteSpawner implements Spawner {
  private remote: Remote | null = null;
  private nextId = 1;
  private readonly pending = new Map<
    number,
    { resolve: (child: SpawnedChild) => void; reject: (err: Error) => void; child: RemoteChild }
  >();
  private readonly running = new Map<number, RemoteChild>();

  /** Starts the remote; it calls `received` with each message and `lost` when it dies. */
  protected abstract startRemote(
    received: (m: SpawnerMessage) => void,
    lost: (err: Error) => void,
  ): Remote;

  spawn(request: SpawnRequest): Promise<SpawnedChild> {
    const remote = this.connected();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, child: new RemoteChild() });
      this.holdWhileBusy();
      remote.post({ id, ...request });
    });
  }

  async close(): Promise<void> {
    const remote = this.remote;
    this.remote = null;
    if (remote !== null) await remote.stop();
  }

  private connected(): Remote {
    if (this.remote !== null) return this.remote;
    const remote: Remote = this.startRemote(
      (m) => this.onMessage(m),
      (err) => this.lost(remote, err),
    );
    remote.hold(false); // idle, it must not keep the process alive
    this.remote = remote;
    return remote;
  }

  private holdWhileBusy(): void {
    this.remote?.hold(this.pending.size + this.running.size > 0);
  }

  private onMessage(m: SpawnerMessage): void {
    try {
      this.handle(m);
    } finally {
      this.holdWhileBusy();
    }
  }

  private handle(m: SpawnerMessage): void {
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
        child.failed(errorWithCode(m.message, m.code));
        return;
      case 'exit':
        this.running.delete(m.id);
        child.ended(m.code, m.signal);
        return;
    }
  }

  private lost(remote: Remote, err: Error): void {
    if (this.remote === remote) this.remote = null;
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
      child.ended(null, 'SIGKILL');
    }
  }
}

/**
 * Spawns on one worker thread. Descriptors are process-wide, so the log file Ion opened is
 * handed to the child by number.
 */
export class ThreadSpawner extends RemoteSpawner {
  protected startRemote(received: (m: SpawnerMessage) => void, lost: (err: Error) => void): Remote {
    const worker = new Worker(remoteSource('thread'), { eval: true, stdout: false, stderr: false });
    let stopping = false;
    worker.on('message', received);
    worker.once('error', (err) => lost(err));
    worker.once('exit', () => {
      if (!stopping) lost(new Error('the spawner thread exited'));
    });
    return {
      post: (message) => worker.postMessage(message),
      hold: (on) => (on ? worker.ref() : worker.unref()),
      stop: async () => {
        stopping = true;
        await worker.terminate();
      },
    };
  }
}

/**
 * Spawns from a small launcher process (`node -e`, empty environment: it needs none, and the
 * modules' environments are sent with each request). Forking it copies ~40 MB instead of
 * Ion's whole process, and none of that happens on Ion's threads.
 */
export class ProcessSpawner extends RemoteSpawner {
  protected startRemote(received: (m: SpawnerMessage) => void, lost: (err: Error) => void): Remote {
    const launcher = spawn(process.execPath, ['-e', remoteSource('process')], {
      env: {},
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let stopping = false;
    launcher.on('message', (m) => received(m as SpawnerMessage));
    launcher.once('error', (err) => lost(err));
    launcher.once('exit', (code, signal) => {
      if (!stopping) lost(new Error(`the launcher process exited (${signal ?? code})`));
    });
    return {
      post: (message) => launcher.send(message),
      hold: (on) => {
        if (on) {
          launcher.ref();
          launcher.channel?.ref();
        } else {
          launcher.unref();
          launcher.channel?.unref();
        }
      },
      stop: async () => {
        stopping = true;
        if (launcher.exitCode !== null || launcher.signalCode !== null) return;
        const exited = new Promise((resolve) => launcher.once('exit', resolve));
        launcher.ref(); // an idle launcher is unref'd: waiting for its exit must hold the process
        launcher.disconnect();
        await exited;
      },
    };
  }
}
