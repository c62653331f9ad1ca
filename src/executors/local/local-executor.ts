import { spawn, type ChildProcess } from 'node:child_process';
import { open, mkdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import type { ExecutionResult, ExecutionSpec, Executor } from '../executor.js';
import {
  NotFoundError,
  UnavailableError,
  ValidationError,
  errorMessage,
} from '../../core/errors.js';

/** Options of {@link LocalExecutor}. */
export interface LocalExecutorOptions {
  /** How much of the combined output `logTail` keeps, in bytes. Default 8192. */
  logTailBytes?: number;
  /** Time between SIGTERM and SIGKILL of a run's process group. Default 2000. */
  killGraceMs?: number;
}

/** Largest delay setTimeout honours; beyond it Node fires at once, so no timer is set. */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface ActiveRun {
  kill(reason: 'cancelled'): void;
  done: Promise<unknown>;
}

/**
 * Runs a module as a local child process in its own process group.
 *
 * Decisions:
 * - The environment is exactly `spec.env`; nothing of `process.env` leaks in.
 * - A run ends when its main process exits. Whatever it left running in its process group
 *   (background children) is then killed with SIGKILL, so no process outlives its job and
 *   nothing keeps the output pipes open.
 * - Timeout, abort and {@link close} send SIGTERM to the whole group, then SIGKILL after
 *   `killGraceMs` if the main process still runs.
 * - A command that cannot be started is the module's failure, not the platform's: the run
 *   resolves like a shell would, with exit code 127 and the line `command not found: X`
 *   (ENOENT), or 126 and `command cannot be executed: X (CODE)` for any other start error
 *   (EACCES, ENOEXEC...). The line goes to the log file and the log tail.
 * - It throws only for platform faults: an invalid spec, a missing `workDir`, a log file
 *   that cannot be opened, or a run after {@link close}.
 * - The promise resolves only after the process exited and the log file is flushed and closed.
 */
export class LocalExecutor implements Executor {
  readonly kind = 'local';
  private readonly logTailBytes: number;
  private readonly killGraceMs: number;
  private readonly active = new Set<ActiveRun>();
  private closed = false;

  constructor(options: LocalExecutorOptions = {}) {
    this.logTailBytes = options.logTailBytes ?? 8192;
    this.killGraceMs = options.killGraceMs ?? 2000;
  }

  async start(): Promise<void> {}

  /** Kills every active run (they resolve with `cancelled: true`) and waits for them. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    const runs = [...this.active];
    for (const run of runs) run.kill('cancelled');
    await Promise.allSettled(runs.map((run) => run.done));
  }

  async run(spec: ExecutionSpec): Promise<ExecutionResult> {
    if (this.closed) throw new UnavailableError('local executor: closed, cannot start a run');
    const [program, ...args] = spec.command;
    if (program === undefined || program === '') {
      throw new ValidationError('local executor: empty command', [
        { path: 'command', message: 'must not be empty' },
      ]);
    }
    if (!(spec.timeoutMs > 0)) {
      throw new ValidationError(
        `local executor: timeoutMs must be positive, got ${spec.timeoutMs}`,
        [{ path: 'timeoutMs', message: 'must be positive' }],
      );
    }
    const workDir = await stat(spec.workDir).catch(() => null);
    if (!workDir?.isDirectory())
      throw new NotFoundError(`local executor: workDir is not a directory: ${spec.workDir}`);

    const startedAt = performance.now();
    const log = await LogSink.open(spec.logFile, this.logTailBytes);
    const result = (outcome: Omit<ExecutionResult, 'durationMs' | 'logTail'>): ExecutionResult => ({
      ...outcome,
      durationMs: Math.round(performance.now() - startedAt),
      logTail: log.tail(),
    });

    if (spec.signal.aborted) {
      log.note('[ion] run cancelled before it started');
      await log.close();
      return result({ exitCode: null, signal: null, timedOut: false, cancelled: true });
    }

    if (this.closed) {
      // close() ran while the log was being opened: it could not see this run.
      await log.close();
      throw new UnavailableError('local executor: closed, cannot start a run');
    }
    let child: ChildProcess;
    try {
      child = spawn(program, args, {
        cwd: spec.workDir,
        env: spec.env,
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
    } catch (err) {
      const code = errnoCode(err);
      if (code === undefined || code.startsWith('ERR_')) {
        await log.close();
        throw new ValidationError(
          `local executor: cannot spawn ${program}: ${errorMessage(err)}`,
          [],
          { cause: err },
        );
      }
      log.note(startFailure(program, code));
      await log.close();
      return result({
        exitCode: code === 'ENOENT' ? 127 : 126,
        signal: null,
        timedOut: false,
        cancelled: false,
      });
    }

    let kill: (reason: 'cancelled' | 'timedOut') => void = () => {};
    const done = this.supervise(child, program, spec, log, (k) => (kill = k));
    const run: ActiveRun = { kill: (reason) => kill(reason), done };
    this.active.add(run);
    try {
      return result(await done);
    } finally {
      this.active.delete(run);
    }
  }

  /** Pipes output, arms the timeout and abort, and settles once the process exited and the log is closed. */
  private async supervise(
    child: ChildProcess,
    program: string,
    spec: ExecutionSpec,
    log: LogSink,
    exposeKill: (kill: (reason: 'cancelled' | 'timedOut') => void) => void,
  ): Promise<Omit<ExecutionResult, 'durationMs' | 'logTail'>> {
    const { stdout, stderr } = child;
    if (stdout === null || stderr === null) throw new Error('local executor: stdio pipes missing');
    log.attach(stdout);
    log.attach(stderr);

    let stopReason: 'cancelled' | 'timedOut' | null = null;
    let exited = false;
    let graceTimer: NodeJS.Timeout | undefined;
    const killGroup = (signal: NodeJS.Signals): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, signal);
      } catch {
        // ESRCH: the group is gone already.
      }
    };
    const stop = (reason: 'cancelled' | 'timedOut'): void => {
      if (exited || stopReason !== null) return;
      stopReason = reason;
      log.note(
        reason === 'timedOut'
          ? `[ion] timed out after ${spec.timeoutMs} ms: killing the process group`
          : '[ion] run cancelled: killing the process group',
      );
      killGroup('SIGTERM');
      graceTimer = setTimeout(() => killGroup('SIGKILL'), this.killGraceMs);
    };
    exposeKill(stop);
    const timeoutTimer =
      Number.isFinite(spec.timeoutMs) && spec.timeoutMs <= MAX_TIMER_MS
        ? setTimeout(() => stop('timedOut'), spec.timeoutMs)
        : undefined;
    const onAbort = (): void => stop('cancelled');
    spec.signal.addEventListener('abort', onAbort, { once: true });

    type Ending =
      | { kind: 'exit'; code: number | null; signal: NodeJS.Signals | null }
      | { kind: 'error'; err: Error };
    const ending = await new Promise<Ending>((resolve) => {
      child.once('exit', (code, signal) => resolve({ kind: 'exit', code, signal }));
      child.once('error', (err) => {
        // After a successful spawn, 'error' only reports a failed kill: the exit still comes.
        if (child.pid === undefined) resolve({ kind: 'error', err });
      });
    });
    exited = true;
    clearTimeout(timeoutTimer);
    clearTimeout(graceTimer);
    spec.signal.removeEventListener('abort', onAbort);

    if (ending.kind === 'error') {
      stdout.destroy();
      stderr.destroy();
      const code = errnoCode(ending.err) ?? 'EUNKNOWN';
      log.note(startFailure(program, code));
      await log.close();
      return {
        exitCode: code === 'ENOENT' ? 127 : 126,
        signal: null,
        timedOut: false,
        cancelled: false,
      };
    }

    // The main process is gone: kill what it left in its group, then drain the pipes. A
    // descendant that escaped the group could hold them open, hence the deadline.
    killGroup('SIGKILL');
    await drain([stdout, stderr], this.killGraceMs);
    await log.close();
    return {
      exitCode: ending.code,
      signal: ending.signal,
      timedOut: stopReason === 'timedOut',
      cancelled: stopReason === 'cancelled',
    };
  }
}

/** The log file (appended) plus an in-memory tail of the last `tailBytes` bytes. */
class LogSink {
  private chunks: Buffer[] = [];
  private size = 0;
  private readonly sources: Readable[] = [];

  private constructor(
    private readonly stream: Writable,
    private readonly tailBytes: number,
    private readonly closed: Promise<void>,
  ) {}

  static async open(path: string, tailBytes: number): Promise<LogSink> {
    await mkdir(dirname(path), { recursive: true });
    const handle = await open(path, 'a');
    const stream = handle.createWriteStream();
    // A write error (disk full) must not crash Ion nor fail the run: the log is best effort.
    // finished() settles on close or error; the error is swallowed.
    const closed = finished(stream).catch(() => undefined);
    const sink = new LogSink(stream, tailBytes, closed);
    // After a write error pipe() lets go of its sources: keep them flowing so the child
    // never blocks on a full pipe; the tail still records.
    stream.once('error', () => sink.sources.forEach((s) => s.resume()));
    return sink;
  }

  /** Pipes `source` into the file (with backpressure) and records it in the tail. */
  attach(source: Readable): void {
    this.sources.push(source);
    source.on('data', (chunk: Buffer) => this.track(chunk));
    source.pipe(this.stream, { end: false });
  }

  private track(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.chunks.length > 1 && this.size - (this.chunks[0]?.length ?? 0) >= this.tailBytes) {
      this.size -= this.chunks.shift()?.length ?? 0;
    }
  }

  /** A line of Ion's own, on a line of its own. */
  note(line: string): void {
    const last = this.chunks.at(-1);
    const needsBreak = last !== undefined && last.length > 0 && last[last.length - 1] !== 0x0a;
    const chunk = Buffer.from(`${needsBreak ? '\n' : ''}${line}\n`);
    if (!this.stream.destroyed) this.stream.write(chunk);
    this.track(chunk);
  }

  /** The tail as valid UTF-8: a character cut at the start is dropped, not mangled. */
  tail(): string {
    let bytes = Buffer.concat(this.chunks);
    if (bytes.length > this.tailBytes) {
      bytes = bytes.subarray(bytes.length - this.tailBytes);
      let skip = 0;
      while (skip < 3 && skip < bytes.length && ((bytes[skip] ?? 0) & 0xc0) === 0x80) skip++;
      bytes = bytes.subarray(skip);
    }
    return bytes.toString('utf8');
  }

  async close(): Promise<void> {
    this.stream.end();
    await this.closed;
  }
}

/** Waits for the streams to end, destroying those still open after `deadlineMs`. */
async function drain(streams: Readable[], deadlineMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, deadlineMs);
  });
  const ended = Promise.all(streams.map((s) => finished(s).catch(() => undefined)));
  await Promise.race([ended, deadline]);
  clearTimeout(timer);
  for (const s of streams) s.destroy();
}

function startFailure(program: string, code: string): string {
  return code === 'ENOENT'
    ? `[ion] command not found: ${program}`
    : `[ion] command cannot be executed: ${program} (${code})`;
}

function errnoCode(err: unknown): string | undefined {
  return err instanceof Error && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}
