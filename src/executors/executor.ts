/**
 * The executor port: runs one module invocation in a prepared job directory and reports how
 * it ended. It never throws for a module's failure (that is data in the result); it throws
 * only when the platform itself could not start the run.
 */
export interface ExecutionSpec {
  jobId: string;
  attempt: number;
  /** The prepared job directory (the module's base dir and working directory). */
  workDir: string;
  /** argv. */
  command: string[];
  /** The complete environment of the module: nothing else is inherited. */
  env: Record<string, string>;
  timeoutMs: number;
  /** stdout and stderr are appended here as they arrive. */
  logFile: string;
  /** Aborting kills the run (as a group) and resolves with `cancelled: true`. */
  signal: AbortSignal;
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
}

export interface Executor {
  readonly kind: string;
  start(): Promise<void>;
  /** Idempotent; kills whatever still runs. */
  close(): Promise<void>;
  run(spec: ExecutionSpec): Promise<ExecutionResult>;
}
