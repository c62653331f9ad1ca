import type { Database } from 'better-sqlite3';
import { NotFoundError } from '../../core/errors.js';
import * as lifecycle from '../../core/job-lifecycle.js';
import type { Attempt, Job } from '../../core/types.js';
import type {
  BeginAttemptInput,
  BeginAttemptResult,
  CancelResult,
  CommitAttemptInput,
  FailAttemptInput,
  JobFilter,
  LogProgress,
  RenewResult,
} from '../document-store.js';
import { jobSnapshot } from '../rows.js';
import {
  conditions,
  insertDeadLetter,
  insertEventIfAbsent,
  insertOutbox,
  insertRunningAttempt,
  jobRow,
  requireJob,
  toAttempt,
  toJob,
} from './rows.js';
import type { AttemptRow, JobRow } from './rows.js';
import { settleIfDone } from './settlements.js';

/**
 * The job statements of the SQLite document store: reads, and the lifecycle transactions
 * (begin, renew, cancel, fail, commit), each run by the store inside one `BEGIN IMMEDIATE`
 * transaction it owns. What each transition does is decided in core/job-lifecycle.ts; these
 * functions read the rows it needs and persist its answer.
 */

export function getJob(db: Database, jobId: string): Job | null {
  const row = jobRow(db, jobId);
  return row ? toJob(row) : null;
}

export function listJobs(db: Database, filter: JobFilter = {}): Job[] {
  const { where, params } = conditions(
    {
      module: filter.module,
      state: filter.state,
      correlation_id: filter.correlationId,
      event_id: filter.eventId,
      replay_id: filter.replayId,
    },
    [{ col: 'updated_at', since: filter.since, until: filter.until }],
  );
  const rows = db
    .prepare(`SELECT * FROM jobs ${where} ORDER BY updated_at DESC, rowid DESC LIMIT ?`)
    .all(...params, filter.limit ?? 100) as JobRow[];
  return rows.map(toJob);
}

export function listAttempts(db: Database, jobId: string): Attempt[] {
  return (
    db
      .prepare('SELECT * FROM attempts WHERE job_id = ? ORDER BY attempt')
      .all(jobId) as AttemptRow[]
  ).map(toAttempt);
}

export function beginAttempt(db: Database, input: BeginAttemptInput): BeginAttemptResult {
  // The event normally exists already (root insert or parent commit); inserting it if
  // absent keeps the job's foreign key satisfied whatever route the delivery took.
  insertEventIfAbsent(db, input.event);
  const existing = jobRow(db, input.jobId);
  const step = lifecycle.decideBegin(existing ? jobSnapshot(existing) : null);
  if (step.kind === 'create') {
    db.prepare(
      `INSERT INTO jobs (job_id, module, module_version, event_id, correlation_id, state,
         attempts, failures_since_redrive, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)`,
    ).run(
      input.jobId,
      input.module,
      input.moduleVersion,
      input.event.eventId,
      input.event.correlationId,
      step.attempt,
      step.failures,
      input.startedAt,
      input.startedAt,
    );
    insertRunningAttempt(db, input, step.attempt);
    return {
      status: 'started',
      job: requireJob(db, input.jobId),
      attempt: step.attempt,
      failures: step.failures,
    };
  }
  if (!existing) throw new NotFoundError(`job ${input.jobId} vanished while starting it`);
  if (step.kind === 'ended') return { status: step.status, job: toJob(existing) };
  const live = db
    .prepare(
      `SELECT attempt, lease_until FROM attempts
       WHERE job_id = ? AND outcome = 'running' AND lease_until > ?
       ORDER BY attempt DESC LIMIT 1`,
    )
    .get(input.jobId, input.startedAt) as { attempt: number; lease_until: string } | undefined;
  const reclaim = lifecycle.decideReclaim(
    live ? { attempt: live.attempt, leaseUntil: live.lease_until } : null,
  );
  if (reclaim.kind === 'busy') {
    const { attempt, leaseUntil } = reclaim;
    return { status: 'busy', job: toJob(existing), attempt, leaseUntil };
  }
  const lost = db
    .prepare(
      `UPDATE attempts SET outcome = 'failed', finished_at = ?, error_code = ?, error_kind = ?,
         error = ?, counts_as_failure = ?
       WHERE job_id = ? AND outcome = 'running'`,
    )
    .run(
      input.startedAt,
      reclaim.errorCode,
      reclaim.errorKind,
      reclaim.error,
      reclaim.countsAsFailure ? 1 : 0,
      input.jobId,
    ).changes;
  const restart = lifecycle.decideRestart(jobSnapshot(existing), lost);
  if (restart.kind === 'cancel') {
    db.prepare(
      `UPDATE jobs SET state = ?, finished_at = ?, updated_at = ?, last_error = ?
       WHERE job_id = ?`,
    ).run(restart.state, input.startedAt, input.startedAt, restart.lastError, input.jobId);
    settleIfDone(db, existing.correlation_id, input.startedAt);
    return { status: 'cancelled', job: requireJob(db, input.jobId) };
  }
  db.prepare(
    `UPDATE jobs SET state = ?, attempts = ?, module_version = ?, failures_since_redrive = ?,
       updated_at = ?, last_error = COALESCE(?, last_error)
     WHERE job_id = ?`,
  ).run(
    restart.state,
    restart.attempt,
    input.moduleVersion,
    restart.failures,
    input.startedAt,
    restart.lastError,
    input.jobId,
  );
  insertRunningAttempt(db, input, restart.attempt);
  const { attempt, failures } = restart;
  return { status: 'started', job: requireJob(db, input.jobId), attempt, failures };
}

export function renewAttempt(
  db: Database,
  jobId: string,
  attempt: number,
  leaseUntil: string,
  progress?: LogProgress,
): RenewResult {
  const res =
    progress === undefined
      ? db
          .prepare(
            `UPDATE attempts SET lease_until = ?
             WHERE job_id = ? AND attempt = ? AND outcome = 'running'`,
          )
          .run(leaseUntil, jobId, attempt)
      : db
          .prepare(
            `UPDATE attempts SET lease_until = ?, log_tail = ?, log_size = ?
             WHERE job_id = ? AND attempt = ? AND outcome = 'running'`,
          )
          .run(leaseUntil, progress.logTail, progress.logSize, jobId, attempt);
  if (res.changes === 0) return lifecycle.renewOutcome(false, null);
  return lifecycle.renewOutcome(true, jobRow(db, jobId)?.cancel_requested_at);
}

export function requestCancel(db: Database, jobId: string, at: string): CancelResult | null {
  const row = jobRow(db, jobId);
  if (!row) return null;
  const step = lifecycle.decideCancel(jobSnapshot(row).state);
  if (step.kind === 'settled') return { status: 'settled', job: toJob(row) };
  if (step.kind === 'flag') {
    db.prepare(
      `UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, ?), updated_at = ?
       WHERE job_id = ?`,
    ).run(at, at, jobId);
    return { status: 'cancelling', job: requireJob(db, jobId) };
  }
  db.prepare(
    `UPDATE jobs SET state = ?, cancel_requested_at = ?, finished_at = ?, updated_at = ?,
       last_error = ?
     WHERE job_id = ?`,
  ).run(step.state, at, at, at, step.lastError, jobId);
  settleIfDone(db, row.correlation_id, at);
  return { status: 'cancelled', job: requireJob(db, jobId) };
}

/** The columns that close an attempt as failed. */
type FailedAttempt = Omit<FailAttemptInput, 'nextState' | 'deadLetterReason'>;

/**
 * Closes the attempt as failed, only while it runs, so a late report cannot overwrite newer
 * state. Whether it was running.
 */
function closeAttemptFailed(db: Database, a: FailedAttempt): boolean {
  const res = db
    .prepare(
      `UPDATE attempts SET outcome = 'failed', finished_at = ?, duration_ms = ?, exit_code = ?,
         error_code = ?, error_kind = ?, error = ?, log_tail = ?, log_blob = ?,
         counts_as_failure = ?
       WHERE job_id = ? AND attempt = ? AND outcome = 'running'`,
    )
    .run(
      a.finishedAt,
      a.durationMs,
      a.exitCode,
      a.errorCode,
      a.errorKind,
      a.error,
      a.logTail,
      a.logBlob,
      a.countsAsFailure ? 1 : 0,
      a.jobId,
      a.attempt,
    );
  return res.changes > 0;
}

export function failAttempt(db: Database, input: FailAttemptInput): Job {
  const job = requireJob(db, input.jobId);
  const closed = closeAttemptFailed(db, input);
  const step = lifecycle.decideFailure(job, input, closed);
  if (step.kind === 'ignore') return job;
  db.prepare(
    `UPDATE jobs SET state = ?, last_error = ?, finished_at = ?, updated_at = ?,
       failures_since_redrive = failures_since_redrive + ?
     WHERE job_id = ?`,
  ).run(
    step.state,
    step.lastError,
    input.finishedAt,
    input.finishedAt,
    step.failuresAdded,
    input.jobId,
  );
  if (step.deadLetter !== null) insertDeadLetter(db, step.deadLetter);
  if (step.ended) settleIfDone(db, job.correlationId, input.finishedAt);
  return requireJob(db, input.jobId);
}

export function commitAttempt(db: Database, input: CommitAttemptInput): Job {
  const job = requireJob(db, input.jobId);
  const hasInsights =
    db.prepare('SELECT 1 FROM insights WHERE job_id = ? LIMIT 1').get(job.jobId) !== undefined;
  const step = lifecycle.decideCommit(job.state, hasInsights);
  if (step.kind === 'already_succeeded') {
    closeAttemptFailed(db, { ...input, ...lifecycle.supersededAttempt(input.attempt) });
    return job;
  }
  const res = db
    .prepare(
      `UPDATE attempts SET outcome = 'succeeded', finished_at = ?, duration_ms = ?,
         exit_code = ?, log_tail = ?, log_blob = ?, error_code = NULL, error_kind = NULL,
         error = NULL, counts_as_failure = 0
       WHERE job_id = ? AND attempt = ?`,
    )
    .run(
      input.finishedAt,
      input.durationMs,
      input.exitCode,
      input.logTail,
      input.logBlob,
      input.jobId,
      input.attempt,
    );
  if (res.changes === 0) {
    throw new NotFoundError(`attempt ${input.attempt} of job ${input.jobId} does not exist`);
  }
  if (step.writeInsights) {
    const insert = db.prepare(
      `INSERT INTO insights (job_id, module, event_id, correlation_id, key, value, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    );
    for (const kv of input.insights) {
      insert.run(
        job.jobId,
        job.module,
        job.eventId,
        job.correlationId,
        kv.key,
        kv.value,
        input.finishedAt,
      );
    }
  }
  for (const child of input.children) {
    if (insertEventIfAbsent(db, child)) insertOutbox(db, child.eventId, null, input.finishedAt);
  }
  db.prepare(
    `UPDATE jobs SET state = ?, last_error = NULL, finished_at = ?, updated_at = ?,
       outputs_json = ?
     WHERE job_id = ?`,
  ).run(step.state, input.finishedAt, input.finishedAt, JSON.stringify(input.outputs), input.jobId);
  settleIfDone(db, job.correlationId, input.finishedAt);
  return requireJob(db, input.jobId);
}
