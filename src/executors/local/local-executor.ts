import { stat } from 'node:fs/promises';
import type { ExecutionResult, ExecutionSpec, Executor } from '../executor.js';
import {
  NotFoundError,
  UnavailableError,
  ValidationError,
  errorMessage,
} from '../../core/errors.js';
import { LogSink, errnoCode } from './log-sink.js';
import {
  InlineSpawner,
  ProcessSpawner,
  ThreadSpawner,
  type SpawnedChild,
  type Spawner,
} from './spawner.js';

/** Options of {@link LocalExecutor}. */
export interface LocalExecutorOptions {
  /** How much of the combined output `logTail` keeps, in bytes. Default 8192. */
  logTailBytes?: number;
  /** Time between SIGTERM and SIGKILL of a run's process group. Default 2000. */
  killGraceMs?: number;
  /**
   * Where processes are spawned: `process` (default) from a small launcher process, so the
   * fork neither holds Ion's event loop nor copies Ion's whole process; `thread` on a worker
   * thread of Ion's process; `inline` on the calling thread (docs/benchmarks.md measures
   * them).
   */
  spawnOn?: 'inline' | 'thread' | 'process';
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
 *   (background children) is then killed with SIGKILL, so no process outlives its job.
 * - Output does not pass through Ion: the log file is opened in append mode and its
 *   descriptor is the child's stdout and stderr. Once the run is over, `logTail` is read
 *   back from the file (the last `logTailBytes` bytes this run wrote). A descendant that
 *   escaped the process group (`setsid`) keeps its own copy of the descriptor and may go on
 *   appending to the file after the run resolved; those bytes are not in `logTail` (the old
 *   pipe design cut them off after a deadline instead).
 * - Timeout, abort and {@link close} send SIGTERM to the whole group, then SIGKILL after
 *   `killGraceMs` if the main process still runs.
 * - A command that cannot be started is the module's failure, not the platform's: the run
 *   resolves like a shell would, with exit code 127 and the line `command not found: X`
 *   (ENOENT), or 126 and `command cannot be executed: X (CODE)` for any other start error
 *   (EACCES, ENOEXEC...). The line goes to the log file and the log tail.
 * - It throws only for platform faults: an invalid spec, a missing `workDir`, a log file
 *   that cannot be opened, or a run after {@link close}.
 * - The promise resolves only after the process exited, its group was killed, Ion's notes
 *   were written and Ion's descriptor of the log file was closed.
 */
export class LocalExecutor implements Executor {
  readonly kind = 'local';
  private readonly logTailBytes: number;
  private readonly killGraceMs: number;
  private readonly active = new Set<ActiveRun>();
  /** Spawns not yet answered: close() waits for them, so none escapes its kill. */
  private readonly spawning = new Set<Promise<unknown>>();
  private readonly spawner: Spawner;
  private closed = false;

  constructor(options: LocalExecutorOptions = {}) {
    this.logTailBytes = options.logTailBytes ?? 8192;
    this.killGraceMs = options.killGraceMs ?? 2000;
    this.spawner =
      options.spawnOn === 'thread'
        ? new ThreadSpawner()
        : options.spawnOn === 'inline'
          ? new InlineSpawner()
          : new ProcessSpawner();
  }

  async start(): Promise<void> {}

  /** Kills every active run (they resolve with `cancelled: true`) and waits for them. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.spawning]);
    await new Promise((resolve) => setImmediate(resolve)); // their runs register themselves
    const runs = [...this.active];
    for (const run of runs) run.kill('cancelled');
    await Promise.allSettled(runs.map((run) => run.done));
    await this.spawner.close();
  }

  /** A host process sees its job directory where it is. */
  moduleDir(workDir: string): string {
    return workDir;
  }

  async run(spec: ExecutionSpec): Promise<ExecutionResult> {
    if (this.closed) throw new UnavailableError('local executor: closed, cannot start a run');
    const [program, ...args] = [...spec.command, ...(spec.args ?? [])];
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
    let child: SpawnedChild;
    const spawning = this.spawner.spawn({
      program,
      args,
      cwd: spec.workDir,
      env: spec.env,
      outputFd: log.fd,
      outputPath: spec.logFile,
    });
    this.spawning.add(spawning);
    try {
      child = await spawning;
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
    } finally {
      this.spawning.delete(spawning);
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

  /** Arms the timeout and abort, and settles once the process exited and the log is closed. */
  private async supervise(
    child: SpawnedChild,
    program: string,
    spec: ExecutionSpec,
    log: LogSink,
    exposeKill: (kill: (reason: 'cancelled' | 'timedOut') => void) => void,
  ): Promise<Omit<ExecutionResult, 'durationMs' | 'logTail'>> {
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

    // The main process is gone: kill what it left in its group, then read the tail and close
    // Ion's descriptor. There are no pipes to drain: the children wrote to the file directly.
    killGroup('SIGKILL');
    await log.close();
    return {
      exitCode: ending.code,
      signal: ending.signal,
      timedOut: stopReason === 'timedOut',
      cancelled: stopReason === 'cancelled',
    };
  }
}

function startFailure(program: string, code: string): string {
  return code === 'ENOENT'
    ? `[ion] command not found: ${program}`
    : `[ion] command cannot be executed: ${program} (${code})`;
}
