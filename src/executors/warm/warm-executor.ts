import { stat } from 'node:fs/promises';
import type { Logger } from 'pino';
import { NotFoundError, UnavailableError, ValidationError } from '../../core/errors.js';
import type { ExecutionResult, ExecutionSpec, Executor } from '../executor.js';
import { JobLog } from './job-log.js';
import { converse, waitMarks } from './warm-conversation.js';
import { newMark, splitEnv } from './protocol.js';
import { WarmProcessLauncher } from './warm-process.js';
import { isRefusal, type WarmLauncher, type WarmRefusal, type WarmSlot } from './warm-slot.js';

/** Options of {@link WarmExecutor}. */
export interface WarmExecutorOptions {
  /** How much of the job's output `logTail` keeps, in bytes. Default 8192. */
  logTailBytes?: number;
  /** Time between SIGTERM and SIGKILL of a process group, and for a graceful exit. Default 2000. */
  killGraceMs?: number;
  /** How long Ion waits after `done` for the end marks on stdout and stderr. Default 2000. */
  markWaitMs?: number;
  /** Where each process gets its own directory (its cwd between jobs). Default the OS tmpdir. */
  homeDir?: string;
  /**
   * What a slot is: host processes by default; `docker/warm-container-executor.ts` passes
   * one that runs each slot as a long-lived container.
   */
  launcher?: WarmLauncher;
  logger?: Logger;
}

/** Largest delay setTimeout honours. */
const MAX_TIMER_MS = 2 ** 31 - 1;

type Outcome = Omit<ExecutionResult, 'durationMs' | 'logTail'>;

/**
 * Runs warm modules: long-lived processes (or containers: {@link WarmLauncher}), each taking one job at a time over the warm
 * protocol (./protocol.ts, docs/modules.md "Warm modules"), with the same job directory and
 * contract variables as a cold run, so the commit after it is the same.
 *
 * Decisions:
 * - Processes are pooled by module, version, command and environment. There are never more
 *   than the module's running jobs (its `concurrency` per worker): a job takes an idle
 *   process of its key or starts one; a replacement starts with the next job, never in a
 *   loop, so a module that crashes at start-up costs one process per attempt.
 * - The job's timeout covers the start-up of a fresh process; a process that exits before
 *   it says `ready` fails the attempt with `module_crashed` and a hint about the SDK.
 * - A crash, an exit or a protocol violation mid-job fails the attempt (`module_crashed`);
 *   a timeout or a cancel kills the process group. The process is never reused after any of
 *   them. `done` with `ok: false` is an ordinary failed attempt and the process stays.
 * - A process retires after `maxJobs` jobs, after `idleTimeoutMs` idle, or after its job
 *   once a newer version of its module has run here (idle older ones stop at once).
 * - {@link close} kills the running jobs' processes (their runs resolve `cancelled`) and
 *   asks the idle ones to exit.
 */
export class WarmExecutor implements Executor {
  readonly kind: string;
  private readonly logTailBytes: number;
  private readonly markWaitMs: number;
  private readonly launcher: WarmLauncher;
  private readonly idle = new Map<string, WarmSlot[]>();
  private readonly processes = new Set<WarmSlot>();
  /** Each slot's job in flight settles here: the slot's directories outlive its job. */
  private readonly busy = new Map<WarmSlot, Promise<void>>();
  /** Slots that ended and are removing their directories: close waits for them. */
  private readonly disposals = new Set<Promise<void>>();
  private readonly newest = new Map<string, number>();
  private readonly active = new Set<(reason: 'cancelled') => void>();
  private closed = false;

  constructor(private readonly options: WarmExecutorOptions = {}) {
    this.logTailBytes = options.logTailBytes ?? 8192;
    this.markWaitMs = options.markWaitMs ?? 2000;
    this.launcher =
      options.launcher ??
      new WarmProcessLauncher({
        killGraceMs: options.killGraceMs ?? 2000,
        ...(options.homeDir === undefined ? {} : { homeDir: options.homeDir }),
      });
    this.kind = this.launcher.kind;
  }

  async start(): Promise<void> {
    await this.launcher.start();
  }

  moduleDir(workDir: string): string {
    return this.launcher.moduleDir(workDir);
  }

  /** The pids of the live processes (tests and diagnostics). */
  pids(): number[] {
    return [...this.processes].flatMap((p) => (p.alive && p.pid !== undefined ? [p.pid] : []));
  }

  /** The ids (pids, container ids) of the live slots (tests and diagnostics). */
  ids(): string[] {
    return [...this.processes].flatMap((p) => (p.alive ? [p.id] : []));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const kill of this.active) kill('cancelled');
    for (const list of this.idle.values()) for (const proc of list) void proc.stop();
    this.idle.clear();
    await Promise.allSettled([...this.processes].map((p) => p.ended));
    await Promise.allSettled([...this.busy.values()]);
    await Promise.allSettled([...this.disposals]);
    await this.launcher.close();
  }

  async run(spec: ExecutionSpec): Promise<ExecutionResult> {
    if (this.closed) throw new UnavailableError('warm executor: closed, cannot start a run');
    this.launcher.check(spec);
    const program = spec.command[0] ?? spec.args?.[0] ?? spec.container?.image ?? 'the module';
    if (!(spec.timeoutMs > 0))
      throw new ValidationError(
        `warm executor: timeoutMs must be positive, got ${spec.timeoutMs}`,
        [{ path: 'timeoutMs', message: 'must be positive' }],
      );
    if (!(await stat(spec.workDir).catch(() => null))?.isDirectory())
      throw new NotFoundError(`warm executor: workDir is not a directory: ${spec.workDir}`);

    const startedAt = performance.now();
    const log = await JobLog.open(spec.logFile, this.logTailBytes);
    const finish = async (outcome: Outcome): Promise<ExecutionResult> => {
      await log.close();
      return {
        ...outcome,
        durationMs: Math.round(performance.now() - startedAt),
        logTail: log.tail(),
      };
    };
    const plain = { exitCode: null, signal: null, timedOut: false, cancelled: false };
    if (spec.signal.aborted) {
      log.note('[ion] run cancelled before it started');
      return finish({ ...plain, cancelled: true });
    }

    const module = spec.module ?? program;
    const version = spec.moduleVersion ?? 0;
    const { processEnv, jobEnv } = splitEnv(spec.env);
    const key = JSON.stringify([module, version, this.launcher.identity(spec), processEnv]);
    this.retireOlder(module, version);
    const mark = newMark();
    let proc: WarmSlot;
    try {
      const taken =
        this.takeIdle(key) ?? (await this.spawn(key, module, version, spec, processEnv));
      if (isRefusal(taken)) {
        log.note(`[ion] ${taken.message}`);
        return await finish({
          ...plain,
          exitCode: taken.exitCode,
          ...(taken.failure === undefined ? {} : { failure: taken.failure }),
        });
      }
      proc = taken;
    } catch (err) {
      await log.close();
      throw err;
    }
    let settle = (): void => undefined;
    this.busy.set(proc, new Promise<void>((resolve) => (settle = resolve)));
    // The job directory as the module sees it; moved back (and the slot cleared) after it.
    let entered = false;
    const leave = async (): Promise<void> => {
      if (!entered) return;
      entered = false;
      await proc.leave(spec.workDir).catch((err: unknown) => {
        log.note(`[ion] could not take the job's files back from the ${proc.noun}: ${String(err)}`);
        void proc.kill();
      });
    };
    proc.attach(log, mark);

    // Stop (timeout, cancel, close) races every wait below.
    let stopReason: 'timedOut' | 'cancelled' | null = null;
    let wake: (() => void) | null = null;
    const stopped = new Promise<'stopped'>((resolve) => (wake = () => resolve('stopped')));
    const stop = (reason: 'timedOut' | 'cancelled'): void => {
      if (stopReason !== null) return;
      stopReason = reason;
      wake?.();
    };
    const timer =
      spec.timeoutMs <= MAX_TIMER_MS
        ? setTimeout(() => stop('timedOut'), spec.timeoutMs)
        : undefined;
    const onAbort = (): void => stop('cancelled');
    spec.signal.addEventListener('abort', onAbort, { once: true });
    this.active.add(stop);
    try {
      let dir: string;
      try {
        dir = await proc.enter(spec.workDir);
        entered = true;
      } catch (err) {
        entered = true; // whatever moved goes back
        await proc.kill();
        proc.detach();
        await log.close();
        throw new UnavailableError(
          `warm executor: cannot lay out job ${spec.jobId} for the ${proc.noun}: ${String(err)}`,
          { cause: err },
        );
      }
      const outcome = await converse(proc, spec, dir, jobEnv, mark, stopped, log, program);
      if (outcome === 'stopped') {
        log.note(
          stopReason === 'timedOut'
            ? `[ion] timed out after ${spec.timeoutMs} ms: killing the ${proc.noun}`
            : `[ion] run cancelled: killing the ${proc.noun}`,
        );
        await proc.kill();
        proc.detach();
        return await finish({
          ...plain,
          timedOut: stopReason === 'timedOut',
          cancelled: stopReason === 'cancelled',
        });
      }
      if (outcome.kind === 'done') {
        const marked = await waitMarks(proc, stopped, this.markWaitMs);
        if (!marked)
          log.note(
            `[ion] the ${proc.noun} did not mark the end of its output within ${this.markWaitMs} ms; later output is not in this log`,
          );
        proc.detach();
        await leave();
        this.release(proc, spec);
        if (!outcome.ok && outcome.error !== undefined)
          log.note(`[ion] the job failed in the ${proc.noun}: ${outcome.error}`);
        return await finish({ ...plain, exitCode: outcome.ok ? 0 : outcome.exitCode || 1 });
      }
      // The process is gone or broke the protocol: never reused.
      if (outcome.kind === 'violation') {
        log.note(`[ion] warm protocol violation: ${outcome.reason}; killing the ${proc.noun}`);
        await proc.kill();
        proc.detach();
        return await finish({
          ...plain,
          failure: {
            code: 'module_crashed',
            message: `warm protocol violation: ${outcome.reason}`,
          },
        });
      }
      await proc.ended;
      proc.detach();
      if (outcome.kind === 'spawn-error') {
        log.note(outcome.message);
        return await finish({ ...plain, exitCode: outcome.exitCode });
      }
      log.note(`[ion] ${outcome.failure.message}`);
      return await finish({
        ...plain,
        exitCode: outcome.exitCode,
        signal: outcome.signal,
        failure: outcome.failure,
      });
    } finally {
      clearTimeout(timer);
      spec.signal.removeEventListener('abort', onAbort);
      this.active.delete(stop);
      await leave();
      settle();
    }
  }

  private takeIdle(key: string): WarmSlot | undefined {
    const list = this.idle.get(key);
    while (list !== undefined && list.length > 0) {
      const proc = list.pop()!;
      if (proc.alive) {
        clearTimeout(proc.idleTimer);
        return proc;
      }
    }
    return undefined;
  }

  private async spawn(
    key: string,
    module: string,
    version: number,
    spec: ExecutionSpec,
    processEnv: Record<string, string>,
  ): Promise<WarmSlot | WarmRefusal> {
    const logger = this.options.logger;
    const launched = await this.launcher.launch({
      key,
      module,
      version,
      spec,
      processEnv,
      outside: (chunk) =>
        logger?.info(
          { module, version, output: chunk.toString('utf8', 0, 2000) },
          'warm module output outside any job',
        ),
    });
    if (isRefusal(launched)) return launched;
    const proc = launched;
    this.processes.add(proc);
    const disposed = proc.ended.then(async () => {
      this.processes.delete(proc);
      await this.busy.get(proc);
      this.busy.delete(proc);
      await proc.dispose();
    });
    this.disposals.add(disposed);
    void disposed.finally(() => this.disposals.delete(disposed));
    if (this.closed) {
      // close() ran while the slot started: it could not see it.
      await proc.kill();
      throw new UnavailableError('warm executor: closed, cannot start a run');
    }
    return proc;
  }

  /** A job of `version` arrives: idle processes of older versions of the module stop. */
  private retireOlder(module: string, version: number): void {
    if (version <= (this.newest.get(module) ?? -Infinity)) return;
    this.newest.set(module, version);
    for (const [key, list] of this.idle) {
      const keep = list.filter((p) => p.module !== module || p.version >= version);
      for (const proc of list) if (!keep.includes(proc)) void proc.stop();
      this.idle.set(key, keep);
    }
  }

  /** Back to the pool, or retired (maxJobs, a newer version, closing). */
  private release(proc: WarmSlot, spec: ExecutionSpec): void {
    const maxJobs = spec.warm?.maxJobs ?? 100;
    const retire =
      this.closed ||
      !proc.alive ||
      proc.jobs >= maxJobs ||
      proc.version < (this.newest.get(proc.module) ?? 0);
    if (retire) {
      void proc.stop();
      return;
    }
    const idleMs = Math.min(spec.warm?.idleTimeoutMs ?? 300_000, MAX_TIMER_MS);
    proc.idleTimer = setTimeout(() => {
      const list = this.idle.get(proc.key) ?? [];
      this.idle.set(
        proc.key,
        list.filter((p) => p !== proc),
      );
      void proc.stop();
    }, idleMs);
    proc.idleTimer.unref();
    const list = this.idle.get(proc.key) ?? [];
    list.push(proc);
    this.idle.set(proc.key, list);
  }
}
