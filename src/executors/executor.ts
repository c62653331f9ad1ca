import type { PullPolicy, Resources } from '../core/types.js';

/**
 * The executor port: runs one module invocation in a prepared job directory and reports how
 * it ended. It never throws for a module's failure (that is data in the result); it throws
 * only when the platform itself could not start the run.
 */
export interface ExecutionSpec {
  jobId: string;
  attempt: number;
  /** The module's name and version (container labels, warm process pools). */
  module?: string;
  moduleVersion?: number;
  /** The prepared job directory on this host (the module's base dir and working directory). */
  workDir: string;
  /**
   * argv. Empty only for a container with an image: its entrypoint then runs with `args`.
   */
  command: string[];
  /** Arguments after the command (or after the image's entrypoint). */
  args?: string[];
  /** The complete environment of the module: nothing else is inherited. */
  env: Record<string, string>;
  timeoutMs: number;
  /** stdout and stderr are appended here as they arrive. */
  logFile: string;
  /** Aborting kills the run (as a group) and resolves with `cancelled: true`. */
  signal: AbortSignal;
  /** Container settings; executors that run host processes ignore them. */
  container?: ContainerSettings;
  /** Present for a warm module: the run goes to a long-lived process of the module. */
  warm?: { maxJobs: number; idleTimeoutMs: number };
}

/** How a module's container runs (docker executor). */
export interface ContainerSettings {
  /** The module's image; absent: the executor's default runtime image runs `command`. */
  image?: string;
  pull: PullPolicy;
  /** `none` unless the module asks for a network. */
  network: string;
  user?: string;
  resources: Resources;
  /**
   * Host paths the command names (a script beside the pipeline file), mounted read-only at
   * the same path, so a module declared with a command runs unchanged in the runtime image.
   */
  readOnlyPaths: string[];
}

/**
 * Why a run could not be carried out for a reason that is neither the module's exit nor a
 * platform crash: `image_unavailable` (cannot be pulled or does not exist), `module_oom`
 * (killed for passing its memory limit), `module_crashed` (a warm process died mid-job).
 */
export interface ExecutionFailure {
  code: 'image_unavailable' | 'module_oom' | 'module_crashed' | 'pod_unschedulable';
  message: string;
  /** The next attempt waits at least this long (an image that is missing will not appear at once). */
  retryAfterMs?: number;
}

export interface ExecutionResult {
  /** Null when killed by a signal. */
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  cancelled: boolean;
  durationMs: number;
  /** Last few KiB of the combined output. */
  logTail: string;
  /** Set when the run failed in a way the exit status alone does not say. */
  failure?: ExecutionFailure;
}

export interface Executor {
  readonly kind: string;
  start(): Promise<void>;
  /** Idempotent; kills whatever still runs. */
  close(): Promise<void>;
  run(spec: ExecutionSpec): Promise<ExecutionResult>;
  /**
   * The module's view of `workDir`: the path itself for a host process, `/ion` inside a
   * container. The contract variables (`HANDLER_BASE_DIR`...) carry this path.
   */
  moduleDir(workDir: string): string;
}
