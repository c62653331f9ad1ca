import { existsSync, statSync } from 'node:fs';
import { lstat, rm } from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import type { Logger } from 'pino';
import type { BlobStore } from '../blob/blob-store.js';
import type { ExecutorKind, IonEvent, ModuleRecord } from '../core/types.js';
import { collectJobDir } from '../handler/collect.js';
import { prepareJobDir } from '../handler/prepare.js';
import type { ContainerSettings, ExecutionResult, Executor } from './executor.js';
import {
  hostFailure,
  moduleEnv,
  type JobHost,
  type JobHostResult,
  type JobRequest,
} from './job-host.js';

/** Options of {@link DirJobHost}. */
export interface DirJobHostOptions {
  kind: ExecutorKind;
  /** Runs the module in the prepared directory: a process, or a container with it mounted. */
  executor: Executor;
  /** Runs warm modules (long-lived processes); without it a warm module runs cold. */
  warmExecutor?: Executor;
  blobs: BlobStore;
  /** Job directories live under `<dataDir>/jobs`. */
  dataDir: string;
  /** Keep job directories after the attempt (debugging). */
  keepJobDirs: boolean;
  logger: Logger;
}

interface LinkedInput {
  sha256: string;
  ino: number;
  size: number;
  mtimeMs: number;
}

/** Directories no module script lives in; never mounted over a runtime image's own. */
const SYSTEM_DIRS = /^\/(usr|bin|sbin|lib|lib32|lib64|etc|proc|sys|dev|boot|run|var)(\/|$)/;

/**
 * The host paths a module declared with a command (and no image) needs inside the runtime
 * image: the directories of the files its arguments name (`/srv/pipeline/modules/split.py`).
 */
export function commandPaths(args: readonly string[]): string[] {
  const dirs = new Set<string>();
  for (const arg of args) {
    if (!isAbsolute(arg) || SYSTEM_DIRS.test(arg) || !existsSync(arg)) continue;
    dirs.add(statSync(arg).isDirectory() ? arg : dirname(arg));
  }
  return [...dirs];
}

/** How a module's container runs, from its spec. */
export function containerSettings(module: ModuleRecord): ContainerSettings {
  const { run } = module;
  const settings: ContainerSettings = {
    pull: run.pull ?? 'if-not-present',
    network: run.network ?? 'none',
    resources: module.resources ?? {},
    readOnlyPaths:
      run.image === undefined ? commandPaths([...(run.command ?? []), ...(run.args ?? [])]) : [],
  };
  if (run.image !== undefined) settings.image = run.image;
  if (run.user !== undefined) settings.user = run.user;
  return settings;
}

/**
 * A job host whose job directory is on the worker's own disk: prepare and collect run in the
 * worker, the module runs in the directory as a process (`local`) or as a container with the
 * directory bind-mounted at `/ion` (`docker`).
 *
 * Inputs are hard links into the blob store where it allows. A process running as root can
 * write through their read-only mode, so each linked input's inode, size and mtime are
 * checked after the run: a change fails the attempt and the blob is re-verified (and dropped
 * if its bytes no longer match their address).
 */
export class DirJobHost implements JobHost {
  readonly kind: ExecutorKind;

  constructor(private readonly options: DirJobHostOptions) {
    this.kind = options.kind;
  }

  async start(): Promise<void> {
    await this.options.executor.start();
    await this.options.warmExecutor?.start();
  }

  async close(): Promise<void> {
    await this.options.warmExecutor?.close();
    await this.options.executor.close();
  }

  async run(request: JobRequest): Promise<JobHostResult> {
    const { blobs, dataDir, keepJobDirs } = this.options;
    const { jobId, attempt, module, event } = request;
    const executor =
      module.warm !== undefined && this.options.warmExecutor !== undefined
        ? this.options.warmExecutor
        : this.options.executor;
    const dir = join(dataDir, 'jobs', jobId, String(attempt));
    let execution: ExecutionResult | null = null;
    try {
      const layout = await prepareJobDir(dir, event, (sha, dest) => blobs.materialize(sha, dest));
      const linked = await linkedInputs(layout.inData, event);
      execution = await executor.run({
        jobId,
        attempt,
        module: module.name,
        moduleVersion: module.version,
        workDir: dir,
        command: module.run.command ?? [],
        args: module.run.args ?? [],
        env: moduleEnv(request.baseEnv, module, event, executor.moduleDir(dir), attempt),
        timeoutMs: module.timeoutMs,
        logFile: request.logFile,
        signal: request.signal,
        container: containerSettings(module),
        ...(module.warm === undefined ? {} : { warm: module.warm }),
      });
      const modified = await this.modifiedInputs(layout.inData, linked);
      if (modified.length > 0) {
        return {
          execution,
          collected: null,
          failure: {
            code: 'module_output_invalid',
            kind: 'module',
            message: `the module modified its input in/data/${modified[0]} in place; inputs are read-only`,
          },
        };
      }
      const succeeded =
        execution.exitCode === 0 &&
        !execution.cancelled &&
        !execution.timedOut &&
        execution.failure === undefined;
      if (!succeeded) return { execution, collected: null, failure: null };
      const collected = await collectJobDir(dir, module.publishes, (path) => blobs.putFile(path));
      return { execution, collected, failure: null };
    } catch (err) {
      return { execution, collected: null, failure: hostFailure(err) };
    } finally {
      if (!keepJobDirs)
        await rm(join(dataDir, 'jobs', jobId), { recursive: true, force: true }).catch(
          () => undefined,
        );
    }
  }

  /**
   * Inputs that were hard-linked from the blob store and changed in place. Each such blob is
   * re-verified (and dropped by the store if it no longer matches its address).
   */
  private async modifiedInputs(
    inData: string,
    linked: Map<string, LinkedInput>,
  ): Promise<string[]> {
    const modified: string[] = [];
    for (const [path, before] of linked) {
      const after = await lstat(join(inData, path)).catch(() => null);
      if (after === null || after.ino !== before.ino) continue; // removed or replaced: harmless
      if (after.size === before.size && after.mtimeMs === before.mtimeMs) continue;
      modified.push(path);
      if (!(await this.options.blobs.verify(before.sha256))) {
        this.options.logger.error(
          { sha256: before.sha256, path },
          'a module corrupted a shared input blob; it was removed from the blob store',
        );
      }
    }
    return modified;
  }
}

/** Inputs that share their inode with the blob store (hard links), with what they were. */
async function linkedInputs(inData: string, event: IonEvent): Promise<Map<string, LinkedInput>> {
  const linked = new Map<string, LinkedInput>();
  for (const file of event.files) {
    const info = await lstat(join(inData, file.path)).catch(() => null);
    if (info !== null && info.nlink > 1) {
      linked.set(file.path, {
        sha256: file.sha256,
        ino: info.ino,
        size: info.size,
        mtimeMs: info.mtimeMs,
      });
    }
  }
  return linked;
}
