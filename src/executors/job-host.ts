import { IonError, ModuleOutputError, errorMessage } from '../core/errors.js';
import type { ExecutorKind, FailureKind, IonEvent, ModuleRecord } from '../core/types.js';
import type { CollectedOutputs } from '../handler/collect.js';
import type { ExecutionResult } from './executor.js';

/** One attempt of one job, as the worker hands it to a job host. */
export interface JobRequest {
  jobId: string;
  attempt: number;
  /** The module version to run (a replay may pin an older one). */
  module: ModuleRecord;
  event: IonEvent;
  /** The platform part of the module's environment (PATH, HOME, LANG); never secrets. */
  baseEnv: Readonly<Record<string, string>>;
  /**
   * A file on the worker where the attempt's log (stdout and stderr) accumulates while it
   * runs, wherever the module runs: the worker reports its progress and keeps it afterwards.
   */
  logFile: string;
  /** Aborting stops the module (shutdown or cancel; the worker tells which). */
  signal: AbortSignal;
}

/** A failure the job host decided, which overrides the module's exit status. */
export interface HostFailure {
  code: string;
  kind: FailureKind;
  message: string;
}

/**
 * How an attempt ended on its host. The worker decides the attempt's fate from it, in this
 * order: `failure` (prepare failed, inputs modified in place, bad output), a cancel or a
 * shutdown, a timeout, `execution.failure` (out of memory, image unavailable), the exit code,
 * and finally success with `collected`.
 */
export interface JobHostResult {
  /** Null when the module never ran (prepare failed). */
  execution: ExecutionResult | null;
  failure: HostFailure | null;
  /** What collect stored; set only when the module succeeded and its outputs are valid. */
  collected: CollectedOutputs | null;
}

/**
 * The job host port: decides where prepare, the module and collect run for one attempt.
 * `local` and `docker` prepare a directory on the worker's disk and run the module as a
 * process or a container on it; `kubernetes` runs all three inside a pod. The worker keeps
 * the store transaction, the delivery, leases, retries and cancel.
 * Never throws for the module's faults; throws only when the platform could not run it.
 */
export interface JobHost {
  readonly kind: ExecutorKind;
  start(): Promise<void>;
  /** Idempotent; stops whatever still runs. */
  close(): Promise<void>;
  run(request: JobRequest): Promise<JobHostResult>;
}

/** W3C trace context the worker puts in `baseEnv` for one attempt (see docs/tracing.md). */
const TRACE_ENV = ['TRACEPARENT', 'TRACESTATE', 'BAGGAGE'] as const;

/**
 * The environment of one module run: platform base, the module's own, then Ion's contract
 * vars, then the attempt's trace context (`TRACEPARENT`, `TRACESTATE`, `BAGGAGE`, when
 * tracing is on), which the module's own env cannot replace: its spans must join the job's.
 */
export function moduleEnv(
  base: Readonly<Record<string, string>>,
  module: ModuleRecord,
  event: IonEvent,
  dir: string,
  attempt: number,
): Record<string, string> {
  return {
    ...base,
    ...module.env,
    HANDLER_BASE_DIR: dir,
    ION_BASE_DIR: dir,
    ION_MODULE: module.name,
    ION_EVENT_ID: event.eventId,
    ION_EVENT_TYPE: event.type,
    ION_CORRELATION_ID: event.correlationId,
    ION_PARENT_EVENT_ID: event.parentEventId ?? '',
    ION_ATTEMPT: String(attempt),
    ...traceEnv(base),
  };
}

function traceEnv(base: Readonly<Record<string, string>>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of TRACE_ENV) {
    const value = base[name];
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** A thrown error as the attempt's failure: bad output is the module's, the rest the platform's. */
export function hostFailure(err: unknown): HostFailure {
  if (err instanceof ModuleOutputError)
    return { code: err.code, kind: 'module', message: err.message };
  return {
    code: err instanceof IonError ? err.code : 'internal',
    kind: 'platform',
    message: errorMessage(err),
  };
}
