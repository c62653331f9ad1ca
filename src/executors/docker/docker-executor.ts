import { randomBytes } from 'node:crypto';
import { chmod, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type Docker from 'dockerode';
import type { Logger } from 'pino';
import { NotFoundError, UnavailableError, ValidationError } from '../../core/errors.js';
import type {
  ContainerSettings,
  ExecutionFailure,
  ExecutionResult,
  ExecutionSpec,
  Executor,
} from '../executor.js';
import { LogSink } from '../local/log-sink.js';
import {
  CONTAINER_JOB_DIR,
  LABEL,
  containerName,
  createOptions,
  isRootUser,
} from './container-spec.js';
import {
  DEFAULT_DOCKER_HOST,
  dockerClient,
  engineMessage,
  ensureImage,
  isConnectionError,
  statusOf,
  waitExit,
} from './engine.js';
import { captureLog } from './log-demux.js';
import { OrphanSweeper, type AttemptLiveness } from './orphan-sweeper.js';

/** Options of {@link DockerExecutor}. */
export interface DockerExecutorOptions {
  /** The Engine API address (`unix:///run/podman/podman.sock`, `tcp://host:2375`). */
  host?: string;
  /** The image that runs modules declared with a command and no image. */
  runtimeImage: string;
  /**
   * Host directories mounted read-only at the same path into every container of the runtime
   * image (modules declared with a command): Ion's module SDKs (`sdk/`), which the example
   * modules import by a path relative to their script.
   */
  runtimeMounts?: string[];
  /** Time between the stop signal (SIGTERM) and the kill on timeout or cancel. Default 2000. */
  stopGraceMs?: number;
  /** A failure to find or pull an image asks for no retry sooner than this. Default 60000. */
  imageRetryDelayMs?: number;
  /** Processes a container may hold at once (fork bombs). Default 4096. */
  pidsLimit?: number;
  /** How much of the log `logTail` keeps, in bytes. Default 8192. */
  logTailBytes?: number;
  /**
   * Whether the attempt a labelled container belongs to still runs somewhere (this worker or
   * another one). The sweep removes the containers whose attempts are not live; an error
   * counts as live. Without it no container is ever swept.
   */
  isAttemptLive?: AttemptLiveness;
  /** Time between sweeps after the one at start-up. Default 3 minutes; 0 turns them off. */
  sweepIntervalMs?: number;
  logger?: Logger;
}

/** Largest delay setTimeout honours; beyond it Node fires at once, so no timer is set. */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface ActiveRun {
  stop(reason: 'cancelled'): void;
  done: Promise<unknown>;
}

/**
 * Runs each attempt as a container on a Docker Engine API (dockerd, or podman's compatible
 * socket), with the job directory bind-mounted at `/ion`.
 *
 * Decisions:
 * - One container per attempt, labelled `ion.job`, `ion.attempt`, `ion.module` and
 *   `ion.executor=docker`, named after the job, with `Init: true` (a small init reaps
 *   zombies and forwards the stop signal), no network unless the module asks for one, and
 *   the module's memory, CPU and GPU limits plus a pids limit. Memory has no swap, so a
 *   module past its limit is killed: `State.OOMKilled` becomes the failure `module_oom`.
 * - `in/` is mounted a second time, read-only, at `/ion/in`: a root module cannot write
 *   the inputs (hard links into the blob store). A module declared with a command and no
 *   image runs in the runtime image with its script's directory mounted read-only.
 * - A non-root `user` gets a world-writable `out/` (the worker owns the job directory).
 * - The environment is exactly `spec.env`: nothing of the worker's (and no Docker socket)
 *   reaches the module.
 * - The log streams live into `spec.logFile` (appended; stdout and stderr in arrival
 *   order) with backpressure; `logTail` is read back from the file like the local
 *   executor's.
 * - Timeout, cancel and {@link close} send SIGTERM, then SIGKILL after `stopGraceMs`.
 * - The container is removed once its state is read; the {@link OrphanSweeper} removes
 *   the ones a crashed worker left behind.
 * - An image that is missing or cannot be pulled is the result's failure
 *   `image_unavailable`, with `retryAfterMs`. An engine that cannot be reached throws an
 *   UnavailableError naming the address (a platform fault, never the module's).
 */
export class DockerExecutor implements Executor {
  readonly kind = 'docker';
  readonly host: string;
  private readonly docker: Docker;
  private readonly stopGraceMs: number;
  private readonly imageRetryDelayMs: number;
  private readonly pidsLimit: number;
  private readonly logTailBytes: number;
  private readonly active = new Set<ActiveRun>();
  /** Names of the containers this executor runs now: the sweep never touches them. */
  private readonly ownNames = new Set<string>();
  private readonly sweeper: OrphanSweeper | undefined;
  /** podman (here: runc on cgroup v1) does not report `OOMKilled`: see {@link outOfMemory}. */
  private podman = false;
  private closed = false;

  constructor(private readonly options: DockerExecutorOptions) {
    this.host = options.host ?? DEFAULT_DOCKER_HOST;
    this.docker = dockerClient(this.host);
    this.stopGraceMs = options.stopGraceMs ?? 2000;
    this.imageRetryDelayMs = options.imageRetryDelayMs ?? 60_000;
    this.pidsLimit = options.pidsLimit ?? 4096;
    this.logTailBytes = options.logTailBytes ?? 8192;
    if (options.isAttemptLive !== undefined) {
      this.sweeper = new OrphanSweeper({
        docker: this.docker,
        isAttemptLive: options.isAttemptLive,
        isOwn: (name) => this.ownNames.has(name),
        intervalMs: options.sweepIntervalMs ?? 3 * 60_000,
        ...(options.logger === undefined ? {} : { logger: options.logger }),
      });
    }
  }

  /** Checks that the engine answers, then removes orphaned containers (and keeps doing so). */
  async start(): Promise<void> {
    try {
      await this.docker.ping();
      const version = (await this.docker.version()) as { Components?: { Name?: string }[] };
      this.podman = (version.Components ?? []).some((c) => /podman/i.test(c.Name ?? ''));
    } catch (err) {
      throw this.unreachable(err);
    }
    await this.sweeper?.start();
  }

  /** Stops every active run (they resolve with `cancelled: true`) and waits for them. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    this.sweeper?.close();
    const runs = [...this.active];
    for (const run of runs) run.stop('cancelled');
    await Promise.allSettled(runs.map((run) => run.done));
  }

  /** Removes the orphans now; resolves to how many were removed. */
  async sweep(): Promise<number> {
    return (await this.sweeper?.sweep()) ?? 0;
  }

  /** A container sees its job directory at `/ion`. */
  moduleDir(): string {
    return CONTAINER_JOB_DIR;
  }

  async run(spec: ExecutionSpec): Promise<ExecutionResult> {
    if (this.closed) throw new UnavailableError('docker executor: closed, cannot start a run');
    const settings: ContainerSettings = {
      pull: 'if-not-present',
      network: 'none',
      resources: {},
      readOnlyPaths: [],
      ...spec.container,
    };
    const image = settings.image ?? this.options.runtimeImage;
    if (settings.image === undefined && this.options.runtimeMounts !== undefined) {
      const paths = new Set([...settings.readOnlyPaths, ...this.options.runtimeMounts]);
      settings.readOnlyPaths = [...paths];
    }
    if (settings.image === undefined && spec.command.length === 0) {
      throw new ValidationError('docker executor: a module without an image needs a command', [
        { path: 'command', message: 'must not be empty without an image' },
      ]);
    }
    if (!(spec.timeoutMs > 0)) {
      throw new ValidationError(
        `docker executor: timeoutMs must be positive, got ${spec.timeoutMs}`,
        [{ path: 'timeoutMs', message: 'must be positive' }],
      );
    }
    const workDir = await stat(spec.workDir).catch(() => null);
    if (!workDir?.isDirectory())
      throw new NotFoundError(`docker executor: workDir is not a directory: ${spec.workDir}`);

    const startedAt = performance.now();
    const log = await LogSink.open(spec.logFile, this.logTailBytes);
    const result = async (
      outcome: Partial<Omit<ExecutionResult, 'durationMs' | 'logTail'>>,
    ): Promise<ExecutionResult> => {
      await log.close();
      return {
        exitCode: null,
        signal: null,
        timedOut: false,
        cancelled: false,
        ...outcome,
        durationMs: Math.round(performance.now() - startedAt),
        logTail: log.tail(),
      };
    };
    const name = containerName(spec.jobId, spec.attempt, randomBytes(4).toString('hex'));
    this.ownNames.add(name);
    try {
      if (spec.signal.aborted) {
        log.note('[ion] run cancelled before it started');
        return await result({ cancelled: true });
      }
      if (!isRootUser(settings.user)) await openOutputs(spec.workDir);
      // The image is looked at only when `always` asks for a pull or the create finds none:
      // one round trip less per job on the common path.
      const create = () =>
        this.docker.createContainer(
          createOptions({ spec, settings, image, name, pidsLimit: this.pidsLimit }),
        );
      let container: Docker.Container | null = null;
      let missing: string | null = null;
      try {
        if (settings.pull === 'always') missing = await ensureImage(this.docker, image, 'always');
        if (missing === null)
          container = await create().catch(async (err: unknown) => {
            if (statusOf(err) !== 404) throw err;
            missing = await ensureImage(this.docker, image, settings.pull);
            return missing === null ? create() : null;
          });
      } catch (err) {
        if (statusOf(err) === 404) missing = `image ${image} does not exist: ${engineMessage(err)}`;
        else throw this.engineFault(`cannot create the container of job ${spec.jobId}`, err);
      }
      if (container === null) {
        const message = missing ?? `image ${image} is unavailable`;
        log.note(`[ion] ${message}`);
        return await result({ failure: this.imageFailure(message) });
      }
      try {
        return await result(await this.supervise(container, spec, settings, log));
      } finally {
        await container.remove({ force: true, v: true }).catch((err: unknown) => {
          if (statusOf(err) !== 404)
            this.options.logger?.warn(
              { container: name, err: engineMessage(err) },
              'could not remove a finished container; the sweep will',
            );
        });
      }
    } finally {
      this.ownNames.delete(name);
      await log.close();
    }
  }

  /** Starts the container, streams its log, enforces timeout and cancel, and reads its end. */
  private async supervise(
    container: Docker.Container,
    spec: ExecutionSpec,
    settings: ContainerSettings,
    log: LogSink,
  ): Promise<Partial<ExecutionResult>> {
    let stopReason: 'cancelled' | 'timedOut' | null = null;
    let exited = false;
    let graceTimer: NodeJS.Timeout | undefined;
    const signal = (name: 'SIGTERM' | 'SIGKILL'): void => {
      if (exited) return;
      container.kill({ signal: name }).catch(() => undefined); // 409: it ended already
    };
    const stop = (reason: 'cancelled' | 'timedOut'): void => {
      if (exited || stopReason !== null) return;
      stopReason = reason;
      log.note(
        reason === 'timedOut'
          ? `[ion] timed out after ${spec.timeoutMs} ms: stopping the container`
          : '[ion] run cancelled: stopping the container',
      );
      signal('SIGTERM');
      graceTimer = setTimeout(() => signal('SIGKILL'), this.stopGraceMs);
    };
    let started = false;
    const run: ActiveRun = {
      stop: (reason) => (started ? stop(reason) : undefined),
      done: Promise.resolve(),
    };
    const onAbort = (): void => stop('cancelled');
    let timeoutTimer: NodeJS.Timeout | undefined;
    const body = async (): Promise<Partial<ExecutionResult>> => {
      const logs = await captureLog(container, log);
      try {
        await container.start();
      } catch (err) {
        logs.cancel();
        // The engine refused to start the process: a command that does not exist in the
        // image is the module's fault, as a shell would say it (exit 127), not Ion's.
        if (isConnectionError(err)) throw this.unreachable(err);
        const message = engineMessage(err);
        log.note(`[ion] the container could not start: ${message}`);
        return { exitCode: /not found|no such file/i.test(message) ? 127 : 126 };
      }
      started = true;
      if (this.closed || spec.signal.aborted) stop('cancelled');
      spec.signal.addEventListener('abort', onAbort, { once: true });
      timeoutTimer =
        spec.timeoutMs <= MAX_TIMER_MS
          ? setTimeout(() => stop('timedOut'), spec.timeoutMs)
          : undefined;
      const waited = await waitExit(container);
      exited = true;
      await logs.finish();
      const state = (await container.inspect()).State;
      const exitCode = state.ExitCode ?? waited.StatusCode ?? null;
      const outcome: Partial<ExecutionResult> = {
        exitCode,
        timedOut: stopReason === 'timedOut',
        cancelled: stopReason === 'cancelled',
      };
      const oom = stopReason === null ? this.outOfMemory(state, settings) : null;
      if (oom !== null) {
        log.note(`[ion] ${oom}`);
        outcome.failure = { code: 'module_oom', message: oom };
      }
      return outcome;
    };
    const done = body();
    run.done = done.catch(() => undefined);
    this.active.add(run);
    try {
      return await done;
    } catch (err) {
      if (isConnectionError(err)) throw this.unreachable(err);
      throw this.engineFault(`lost the container of job ${spec.jobId}`, err);
    } finally {
      exited = true;
      this.active.delete(run);
      clearTimeout(timeoutTimer);
      clearTimeout(graceTimer);
      spec.signal.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Why the container ended out of memory, or null. The engine's `State.OOMKilled` decides;
   * podman leaves it false where conmon cannot watch the cgroup (runc on cgroup v1 here), so
   * on podman a module with a memory limit whose process was killed by SIGKILL (exit 137)
   * that Ion did not send counts as out of memory too, and the message says so.
   */
  private outOfMemory(
    state: Docker.ContainerInspectInfo['State'],
    settings: ContainerSettings,
  ): string | null {
    const limit = settings.resources.memoryBytes;
    const within = limit === undefined ? '' : ` (limit ${limit} bytes)`;
    if (state.OOMKilled) return `the module ran out of memory${within} and was killed`;
    if (this.podman && limit !== undefined && state.ExitCode === 137)
      return `the module was killed by SIGKILL with a memory limit of ${limit} bytes: out of memory (podman does not confirm OOM kills here)`;
    return null;
  }

  private imageFailure(message: string): ExecutionFailure {
    return { code: 'image_unavailable', message, retryAfterMs: this.imageRetryDelayMs };
  }

  /** The one-line error of an engine that cannot be reached. */
  private unreachable(err: unknown): Error {
    if (!isConnectionError(err)) return this.engineFault('the Docker engine failed', err);
    return new UnavailableError(
      `docker executor: cannot reach the Docker engine at ${this.host} (set DOCKER_HOST or executor.docker.host): ${engineMessage(err)}`,
      { cause: err },
    );
  }

  private engineFault(what: string, err: unknown): Error {
    if (isConnectionError(err)) return this.unreachable(err);
    return new UnavailableError(`docker executor: ${what}: ${engineMessage(err)}`, { cause: err });
  }
}

/**
 * Lets a non-root container user write its outputs: the worker made the job directory (as
 * its own user), so `out/`, `out/data` and `out/events` become world-writable.
 */
async function openOutputs(workDir: string): Promise<void> {
  for (const dir of ['out', join('out', 'data'), join('out', 'events')]) {
    await chmod(join(workDir, dir), 0o777).catch(() => undefined);
  }
}

export { LABEL };
