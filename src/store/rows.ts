import type { Attempt, DeadLetter, FailureKind, Insight, ModuleSpec } from '../core/types.js';

/**
 * Rows and row mappers both document-store adapters share: their tables have the same
 * columns, so a row reads back into the domain the same way whatever the database.
 */

export interface AttemptRow {
  job_id: string;
  attempt: number;
  module_version: number;
  worker_id: string;
  outcome: string;
  started_at: string;
  finished_at: string | null;
  /** PostgreSQL returns bigint as text. */
  duration_ms: number | string | null;
  exit_code: number | null;
  error_code: string | null;
  error_kind: string | null;
  error: string | null;
  log_tail: string;
  log_blob: string | null;
}

export interface InsightRow {
  job_id: string;
  module: string;
  event_id: string;
  correlation_id: string;
  key: string;
  value: string;
  created_at: string;
}

export interface DeadLetterRow {
  id: string;
  job_id: string;
  module: string;
  event_id: string | null;
  reason: string;
  attempts: number;
  log_tail: string;
  created_at: string;
}

export function toAttempt(r: AttemptRow): Attempt {
  return {
    jobId: r.job_id,
    attempt: r.attempt,
    moduleVersion: r.module_version,
    workerId: r.worker_id,
    outcome: r.outcome as Attempt['outcome'],
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    durationMs: r.duration_ms === null ? null : Number(r.duration_ms),
    exitCode: r.exit_code,
    errorCode: r.error_code,
    errorKind: r.error_kind as FailureKind | null,
    error: r.error,
    logTail: r.log_tail,
    logBlob: r.log_blob,
  };
}

export function toInsight(r: InsightRow): Insight {
  return {
    jobId: r.job_id,
    module: r.module,
    eventId: r.event_id,
    correlationId: r.correlation_id,
    key: r.key,
    value: r.value,
    createdAt: r.created_at,
  };
}

export function toDeadLetter(r: DeadLetterRow): DeadLetter {
  return {
    id: r.id,
    jobId: r.job_id,
    module: r.module,
    eventId: r.event_id,
    reason: r.reason,
    attempts: r.attempts,
    logTail: r.log_tail,
    createdAt: r.created_at,
  };
}

/**
 * Canonical JSON of a module spec: fixed field order and sorted env keys, so two specs that
 * mean the same thing compare equal whatever order their producer wrote them in, and both
 * stores version a module the same way.
 */
export function canonicalSpec(spec: ModuleSpec): string {
  const env = Object.fromEntries(
    Object.entries(spec.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  );
  return JSON.stringify({
    name: spec.name,
    subscribes: spec.subscribes,
    publishes: spec.publishes,
    executor: spec.executor,
    run: { command: spec.run.command, cwd: spec.run.cwd ?? null },
    retries: spec.retries,
    timeoutMs: spec.timeoutMs,
    concurrency: spec.concurrency,
    env,
  });
}
