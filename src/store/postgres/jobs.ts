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
  pgText,
  requireJob,
  toAttempt,
  toJob,
} from './rows.js';
import type { AttemptRow, Ctx, JobRow } from './rows.js';
import { settleIfDone } from './settlements.js';

/**
 * The job statements of the Postgres document store: reads, and the lifecycle transactions
 * (begin, renew, cancel, fail, commit), each run by the store inside one transaction it owns.
 * Every writer locks the job row before it reads the job's state, so concurrent workers on
 * one job queue instead of interleaving. What each transition does is decided in
 * core/job-lifecycle.ts; these functions read the rows it needs and persist its answer.
 */

export async function getJob(ctx: Ctx, jobId: string): Promise<Job | null> {
  const row = await jobRow(ctx, jobId);
  return row ? toJob(row) : null;
}

export async function listJobs({ q, t }: Ctx, filter: JobFilter = {}): Promise<Job[]> {
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
  const { rows } = await q.query<JobRow>(
    `SELECT * FROM ${t.jobs} ${where} ORDER BY updated_at DESC, seq DESC
     LIMIT $${params.length + 1}`,
    [...params, filter.limit ?? 100],
  );
  return rows.map(toJob);
}

export async function listAttempts({ q, t }: Ctx, jobId: string): Promise<Attempt[]> {
  const { rows } = await q.query<AttemptRow>(
    `SELECT * FROM ${t.attempts} WHERE job_id = $1 ORDER BY attempt`,
    [jobId],
  );
  return rows.map(toAttempt);
}

export async function beginAttempt(
  ctx: Ctx,
  input: BeginAttemptInput,
): Promise<BeginAttemptResult> {
  const { q, t } = ctx;
  // The event normally exists already (root insert or parent commit); inserting it if
  // absent keeps the job's foreign key satisfied whatever route the delivery took.
  await insertEventIfAbsent(ctx, input.event);
  // Insert-if-absent first (the lifecycle's step for a job not there yet): a concurrent
  // creator makes this wait for its commit and then do nothing, and the locking read below
  // sees its row.
  const create = lifecycle.decideBegin(null);
  const inserted = await q.query<JobRow>(
    `INSERT INTO ${t.jobs} (job_id, module, module_version, event_id, correlation_id, state,
       attempts, failures_since_redrive, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, $8, $8)
     ON CONFLICT (job_id) DO NOTHING RETURNING *`,
    [
      input.jobId,
      input.module,
      input.moduleVersion,
      input.event.eventId,
      input.event.correlationId,
      create.attempt,
      create.failures,
      input.startedAt,
    ],
  );
  if (inserted.rows[0]) {
    await insertRunningAttempt(ctx, input, create.attempt);
    const { attempt, failures } = create;
    return { status: 'started', job: toJob(inserted.rows[0]), attempt, failures };
  }
  const existing = await jobRow(ctx, input.jobId, true);
  if (!existing) throw new NotFoundError(`job ${input.jobId} vanished while starting it`);
  const step = lifecycle.decideBegin(jobSnapshot(existing));
  if (step.kind === 'ended') return { status: step.status, job: toJob(existing) };
  const live = await q.query<{ attempt: number; lease_until: string }>(
    `SELECT attempt, lease_until FROM ${t.attempts}
     WHERE job_id = $1 AND outcome = 'running' AND lease_until > $2
     ORDER BY attempt DESC LIMIT 1`,
    [input.jobId, input.startedAt],
  );
  const found = live.rows[0];
  const reclaim = lifecycle.decideReclaim(
    found ? { attempt: found.attempt, leaseUntil: found.lease_until } : null,
  );
  if (reclaim.kind === 'busy') {
    const { attempt, leaseUntil } = reclaim;
    return { status: 'busy', job: toJob(existing), attempt, leaseUntil };
  }
  const closed = await q.query(
    `UPDATE ${t.attempts} SET outcome = 'failed', finished_at = $1, error_code = $2,
       error_kind = $3, error = $4, counts_as_failure = $5
     WHERE job_id = $6 AND outcome = 'running'`,
    [
      input.startedAt,
      reclaim.errorCode,
      reclaim.errorKind,
      reclaim.error,
      reclaim.countsAsFailure,
      input.jobId,
    ],
  );
  const restart = lifecycle.decideRestart(jobSnapshot(existing), closed.rowCount ?? 0);
  if (restart.kind === 'cancel') {
    const { rows } = await q.query<JobRow>(
      `UPDATE ${t.jobs} SET state = $1, finished_at = $2, updated_at = $2, last_error = $3
       WHERE job_id = $4 RETURNING *`,
      [restart.state, input.startedAt, restart.lastError, input.jobId],
    );
    await settleIfDone(ctx, existing.correlation_id, input.startedAt);
    return { status: 'cancelled', job: toJob(rows[0]!) };
  }
  const { rows } = await q.query<JobRow>(
    `UPDATE ${t.jobs} SET state = $1, attempts = $2, module_version = $3,
       failures_since_redrive = $4, updated_at = $5,
       last_error = COALESCE($6::text, last_error)
     WHERE job_id = $7 RETURNING *`,
    [
      restart.state,
      restart.attempt,
      input.moduleVersion,
      restart.failures,
      input.startedAt,
      restart.lastError,
      input.jobId,
    ],
  );
  await insertRunningAttempt(ctx, input, restart.attempt);
  const { attempt, failures } = restart;
  return { status: 'started', job: toJob(rows[0]!), attempt, failures };
}

/** Pushes a running attempt's lease out (and records its log progress); see the port. */
export async function renewAttempt(
  { q, t }: Ctx,
  jobId: string,
  attempt: number,
  leaseUntil: string,
  progress?: LogProgress,
): Promise<RenewResult> {
  const res =
    progress === undefined
      ? await q.query(
          `UPDATE ${t.attempts} SET lease_until = $1
           WHERE job_id = $2 AND attempt = $3 AND outcome = 'running'`,
          [leaseUntil, jobId, attempt],
        )
      : await q.query(
          `UPDATE ${t.attempts} SET lease_until = $1, log_tail = $2, log_size = $3
           WHERE job_id = $4 AND attempt = $5 AND outcome = 'running'`,
          [leaseUntil, pgText(progress.logTail), progress.logSize, jobId, attempt],
        );
  if (!res.rowCount) return lifecycle.renewOutcome(false, null);
  const { rows } = await q.query<{ cancel_requested_at: string | null }>(
    `SELECT cancel_requested_at FROM ${t.jobs} WHERE job_id = $1`,
    [jobId],
  );
  return lifecycle.renewOutcome(true, rows[0]?.cancel_requested_at);
}

/** Cancels a waiting job at once, or flags a running one for its worker; see the port. */
export async function requestCancel(
  ctx: Ctx,
  jobId: string,
  at: string,
): Promise<CancelResult | null> {
  const { q, t } = ctx;
  const row = await jobRow(ctx, jobId, true);
  if (!row) return null;
  const step = lifecycle.decideCancel(jobSnapshot(row).state);
  if (step.kind === 'settled') return { status: 'settled', job: toJob(row) };
  if (step.kind === 'flag') {
    const { rows } = await q.query<JobRow>(
      `UPDATE ${t.jobs} SET cancel_requested_at = COALESCE(cancel_requested_at, $1),
         updated_at = $1
       WHERE job_id = $2 RETURNING *`,
      [at, jobId],
    );
    return { status: 'cancelling', job: toJob(rows[0]!) };
  }
  const { rows } = await q.query<JobRow>(
    `UPDATE ${t.jobs} SET state = $1, cancel_requested_at = $2, finished_at = $2,
       updated_at = $2, last_error = $3
     WHERE job_id = $4 RETURNING *`,
    [step.state, at, step.lastError, jobId],
  );
  await settleIfDone(ctx, row.correlation_id, at);
  return { status: 'cancelled', job: toJob(rows[0]!) };
}

/** Records a failed attempt and moves the job as {@link lifecycle.decideFailure} says. */
/** The columns that close an attempt as failed. */
type FailedAttempt = Omit<FailAttemptInput, 'nextState' | 'deadLetterReason'>;

/**
 * Closes the attempt as failed, only while it runs, so a late report cannot overwrite newer
 * state. Whether it was running.
 */
async function closeAttemptFailed(ctx: Ctx, a: FailedAttempt): Promise<boolean> {
  const { q, t } = ctx;
  const res = await q.query(
    `UPDATE ${t.attempts} SET outcome = 'failed', finished_at = $1, duration_ms = $2,
       exit_code = $3, error_code = $4, error_kind = $5, error = $6, log_tail = $7,
       log_blob = $8, counts_as_failure = $9
     WHERE job_id = $10 AND attempt = $11 AND outcome = 'running'`,
    [
      a.finishedAt,
      a.durationMs,
      a.exitCode,
      a.errorCode,
      a.errorKind,
      pgText(a.error),
      pgText(a.logTail),
      a.logBlob,
      a.countsAsFailure,
      a.jobId,
      a.attempt,
    ],
  );
  return (res.rowCount ?? 0) > 0;
}

export async function failAttempt(ctx: Ctx, input: FailAttemptInput): Promise<Job> {
  const { q, t } = ctx;
  const job = await requireJob(ctx, input.jobId, true);
  const closed = await closeAttemptFailed(ctx, input);
  const step = lifecycle.decideFailure(job, input, closed);
  if (step.kind === 'ignore') return job;
  const { rows } = await q.query<JobRow>(
    `UPDATE ${t.jobs} SET state = $1, last_error = $2, finished_at = $3, updated_at = $3,
       failures_since_redrive = failures_since_redrive + $4
     WHERE job_id = $5 RETURNING *`,
    [step.state, pgText(step.lastError), input.finishedAt, step.failuresAdded, input.jobId],
  );
  if (step.deadLetter !== null) await insertDeadLetter(ctx, step.deadLetter);
  if (step.ended) await settleIfDone(ctx, job.correlationId, input.finishedAt);
  return toJob(rows[0]!);
}

/** The commit transaction of DESIGN.md; a job already succeeded is returned as is. */
export async function commitAttempt(ctx: Ctx, input: CommitAttemptInput): Promise<Job> {
  const { q, t } = ctx;
  const job = await requireJob(ctx, input.jobId, true);
  const hasInsights = await q.query(`SELECT 1 FROM ${t.insights} WHERE job_id = $1 LIMIT 1`, [
    job.jobId,
  ]);
  const step = lifecycle.decideCommit(job.state, (hasInsights.rowCount ?? 0) > 0);
  if (step.kind === 'already_succeeded') {
    await closeAttemptFailed(ctx, { ...input, ...lifecycle.supersededAttempt(input.attempt) });
    return job;
  }
  const res = await q.query(
    `UPDATE ${t.attempts} SET outcome = 'succeeded', finished_at = $1, duration_ms = $2,
       exit_code = $3, log_tail = $4, log_blob = $5, error_code = NULL, error_kind = NULL,
       error = NULL, counts_as_failure = false
     WHERE job_id = $6 AND attempt = $7`,
    [
      input.finishedAt,
      input.durationMs,
      input.exitCode,
      pgText(input.logTail),
      input.logBlob,
      input.jobId,
      input.attempt,
    ],
  );
  if (!res.rowCount) {
    throw new NotFoundError(`attempt ${input.attempt} of job ${input.jobId} does not exist`);
  }
  if (step.writeInsights && input.insights.length > 0) {
    // One statement for all pairs; ORDER BY the ordinality gives ids in the given order.
    await q.query(
      `INSERT INTO ${t.insights} (job_id, module, event_id, correlation_id, key, value,
         created_at)
       SELECT $1, $2, $3, $4, kv.key, kv.value, $5
       FROM unnest($6::text[], $7::text[]) WITH ORDINALITY AS kv (key, value, n)
       ORDER BY kv.n`,
      [
        job.jobId,
        job.module,
        job.eventId,
        job.correlationId,
        input.finishedAt,
        input.insights.map((kv) => kv.key),
        input.insights.map((kv) => kv.value),
      ],
    );
  }
  for (const child of input.children) {
    if (await insertEventIfAbsent(ctx, child)) {
      await insertOutbox(ctx, child.eventId, null, input.finishedAt);
    }
  }
  const { rows } = await q.query<JobRow>(
    `UPDATE ${t.jobs} SET state = $1, last_error = NULL, finished_at = $2,
       updated_at = $2, outputs_json = $3::jsonb
     WHERE job_id = $4 RETURNING *`,
    [step.state, input.finishedAt, JSON.stringify(input.outputs), input.jobId],
  );
  await settleIfDone(ctx, job.correlationId, input.finishedAt);
  return toJob(rows[0]!);
}
