import { NotFoundError } from '../../core/errors.js';
import { nowIso } from '../../core/time.js';
import { jobHasEnded, type Job } from '../../core/types.js';
import type {
  BeginAttemptInput,
  BeginAttemptResult,
  CancelResult,
  CommitAttemptInput,
  FailAttemptInput,
  LogProgress,
  RenewResult,
} from '../document-store.js';
import {
  insertDeadLetter,
  insertEventIfAbsent,
  insertOutbox,
  insertRunningAttempt,
  jobRow,
  pgText,
  requireJob,
  toJob,
} from './rows.js';
import type { Ctx, DeadLetterRow, JobRow } from './rows.js';
import { failureOutcome } from '../rows.js';
import { settleIfDone } from './settlements.js';

/**
 * The job lifecycle transactions of the Postgres document store (begin, fail, commit, redrive),
 * each run by the store inside one transaction it owns. Every function locks the job row before
 * it reads the job's state, so concurrent workers on one job queue instead of interleaving.
 */

const WORKER_LOST_MESSAGE = 'the worker running this attempt stopped before it finished';
const CANCELLED_MESSAGE = 'cancelled on request';

/**
 * Creates the job if absent and records a new running attempt, closing a stale running attempt
 * as `worker_lost` first; terminal jobs are returned untouched.
 */
export async function beginAttempt(
  ctx: Ctx,
  input: BeginAttemptInput,
): Promise<BeginAttemptResult> {
  const { q, t } = ctx;
  // The event normally exists already (root insert or parent commit); inserting it if
  // absent keeps the job's foreign key satisfied whatever route the delivery took.
  await insertEventIfAbsent(ctx, input.event);
  // Insert-if-absent first: a concurrent creator makes this wait for its commit and then
  // do nothing, and the locking read below sees its row.
  const inserted = await q.query<JobRow>(
    `INSERT INTO ${t.jobs} (job_id, module, module_version, event_id, correlation_id, state,
       attempts, failures_since_redrive, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, 'running', 1, 0, $6, $6)
     ON CONFLICT (job_id) DO NOTHING RETURNING *`,
    [
      input.jobId,
      input.module,
      input.moduleVersion,
      input.event.eventId,
      input.event.correlationId,
      input.startedAt,
    ],
  );
  if (inserted.rows[0]) {
    await insertRunningAttempt(ctx, input, 1);
    return { status: 'started', job: toJob(inserted.rows[0]), attempt: 1, failures: 0 };
  }
  const existing = await jobRow(ctx, input.jobId, true);
  if (!existing) throw new NotFoundError(`job ${input.jobId} vanished while starting it`);
  if (existing.state === 'succeeded') return { status: 'succeeded', job: toJob(existing) };
  if (existing.state === 'dead_lettered') {
    return { status: 'dead_lettered', job: toJob(existing) };
  }
  if (existing.state === 'cancelled') return { status: 'cancelled', job: toJob(existing) };
  const live = await q.query<{ attempt: number; lease_until: string }>(
    `SELECT attempt, lease_until FROM ${t.attempts}
     WHERE job_id = $1 AND outcome = 'running' AND lease_until > $2
     ORDER BY attempt DESC LIMIT 1`,
    [input.jobId, input.startedAt],
  );
  if (live.rows[0]) {
    const { attempt, lease_until: leaseUntil } = live.rows[0];
    return { status: 'busy', job: toJob(existing), attempt, leaseUntil };
  }
  const lost =
    (
      await q.query(
        `UPDATE ${t.attempts} SET outcome = 'failed', finished_at = $1,
           error_code = 'worker_lost', error_kind = 'platform', error = $2,
           counts_as_failure = true
         WHERE job_id = $3 AND outcome = 'running'`,
        [input.startedAt, WORKER_LOST_MESSAGE, input.jobId],
      )
    ).rowCount ?? 0;
  if (existing.cancel_requested_at !== null) {
    // Its worker died after a cancel was asked for: the cancel completes here.
    const { rows } = await q.query<JobRow>(
      `UPDATE ${t.jobs} SET state = 'cancelled', finished_at = $1, updated_at = $1,
         last_error = $2
       WHERE job_id = $3 RETURNING *`,
      [input.startedAt, CANCELLED_MESSAGE, input.jobId],
    );
    await settleIfDone(ctx, existing.correlation_id, input.startedAt);
    return { status: 'cancelled', job: toJob(rows[0]!) };
  }
  const attempt = existing.attempts + 1;
  const failures = existing.failures_since_redrive + lost;
  const { rows } = await q.query<JobRow>(
    `UPDATE ${t.jobs} SET state = 'running', attempts = $1, module_version = $2,
       failures_since_redrive = $3, updated_at = $4,
       last_error = CASE WHEN $5::int > 0 THEN $6 ELSE last_error END
     WHERE job_id = $7 RETURNING *`,
    [
      attempt,
      input.moduleVersion,
      failures,
      input.startedAt,
      lost,
      WORKER_LOST_MESSAGE,
      input.jobId,
    ],
  );
  await insertRunningAttempt(ctx, input, attempt);
  return { status: 'started', job: toJob(rows[0]!), attempt, failures };
}

/** Records a failed attempt and moves the job to `nextState`. */
export async function failAttempt(ctx: Ctx, input: FailAttemptInput): Promise<Job> {
  const { q, t } = ctx;
  const job = await requireJob(ctx, input.jobId, true);
  // A late report (the attempt was already closed, e.g. as worker_lost, or the job
  // succeeded through another attempt) must not overwrite newer state.
  const res = await q.query(
    `UPDATE ${t.attempts} SET outcome = 'failed', finished_at = $1, duration_ms = $2,
       exit_code = $3, error_code = $4, error_kind = $5, error = $6, log_tail = $7,
       log_blob = $8, counts_as_failure = $9
     WHERE job_id = $10 AND attempt = $11 AND outcome = 'running'`,
    [
      input.finishedAt,
      input.durationMs,
      input.exitCode,
      input.errorCode,
      input.errorKind,
      pgText(input.error),
      pgText(input.logTail),
      input.logBlob,
      input.countsAsFailure,
      input.jobId,
      input.attempt,
    ],
  );
  if (!res.rowCount || job.state === 'succeeded') return job;
  const { nextState, deadLetter } = failureOutcome(job, input);
  const { rows } = await q.query<JobRow>(
    `UPDATE ${t.jobs} SET state = $1, last_error = $2, finished_at = $3, updated_at = $3,
       failures_since_redrive = failures_since_redrive + $4
     WHERE job_id = $5 RETURNING *`,
    [nextState, pgText(input.error), input.finishedAt, input.countsAsFailure ? 1 : 0, input.jobId],
  );
  if (deadLetter !== null) await insertDeadLetter(ctx, deadLetter);
  if (jobHasEnded(nextState)) await settleIfDone(ctx, job.correlationId, input.finishedAt);
  return toJob(rows[0]!);
}

/** The commit transaction of DESIGN.md; a job already succeeded is returned as is. */
export async function commitAttempt(ctx: Ctx, input: CommitAttemptInput): Promise<Job> {
  const { q, t } = ctx;
  const job = await requireJob(ctx, input.jobId, true);
  if (job.state === 'succeeded') return job;
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
  const hasInsights = await q.query(`SELECT 1 FROM ${t.insights} WHERE job_id = $1 LIMIT 1`, [
    job.jobId,
  ]);
  if (!hasInsights.rowCount && input.insights.length > 0) {
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
    `UPDATE ${t.jobs} SET state = 'succeeded', last_error = NULL, finished_at = $1,
       updated_at = $1, outputs_json = $2::jsonb
     WHERE job_id = $3 RETURNING *`,
    [input.finishedAt, JSON.stringify(input.outputs), input.jobId],
  );
  await settleIfDone(ctx, job.correlationId, input.finishedAt);
  return toJob(rows[0]!);
}

/**
 * Redrive: removes the dead letter, moves its job back to `pending` with a fresh failure budget
 * and writes an outbox entry for the module's subscription only.
 */
export async function redriveDeadLetter(ctx: Ctx, id: string): Promise<Job | null> {
  const { q, t } = ctx;
  // Deleting first makes concurrent redrives of one dead letter race for the row: one wins.
  const deleted = await q.query<DeadLetterRow>(
    `DELETE FROM ${t.deadLetters} WHERE id = $1 RETURNING *`,
    [id],
  );
  const dl = deleted.rows[0];
  if (!dl) return null;
  const job = await jobRow(ctx, dl.job_id, true);
  if (!job) return null;
  const now = nowIso();
  const { rows } = await q.query<JobRow>(
    `UPDATE ${t.jobs} SET state = 'pending', failures_since_redrive = 0, updated_at = $1
     WHERE job_id = $2 RETURNING *`,
    [now, job.job_id],
  );
  await insertOutbox(
    ctx,
    job.event_id,
    job.module,
    now,
    job.replay_id === null ? null : job.job_id,
  );
  return toJob(rows[0]!);
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
  if (!res.rowCount) return 'closed';
  const { rows } = await q.query<{ cancel_requested_at: string | null }>(
    `SELECT cancel_requested_at FROM ${t.jobs} WHERE job_id = $1`,
    [jobId],
  );
  return rows[0]?.cancel_requested_at == null ? 'held' : 'cancel_requested';
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
  const job = toJob(row);
  if (jobHasEnded(job.state)) return { status: 'settled', job };
  if (row.state === 'running') {
    const { rows } = await q.query<JobRow>(
      `UPDATE ${t.jobs} SET cancel_requested_at = COALESCE(cancel_requested_at, $1),
         updated_at = $1
       WHERE job_id = $2 RETURNING *`,
      [at, jobId],
    );
    return { status: 'cancelling', job: toJob(rows[0]!) };
  }
  const { rows } = await q.query<JobRow>(
    `UPDATE ${t.jobs} SET state = 'cancelled', cancel_requested_at = $1, finished_at = $1,
       updated_at = $1, last_error = $2
     WHERE job_id = $3 RETURNING *`,
    [at, CANCELLED_MESSAGE, jobId],
  );
  await settleIfDone(ctx, row.correlation_id, at);
  return { status: 'cancelled', job: toJob(rows[0]!) };
}
