import { redrivePlan } from '../../core/job-lifecycle.js';
import { nowIso } from '../../core/time.js';
import type { DeadLetter, Job } from '../../core/types.js';
import { conditions, insertOutbox, jobRow, toDeadLetter, toJob } from './rows.js';
import type { Ctx, DeadLetterRow, JobRow } from './rows.js';

/** The dead-letter statements of the Postgres document store (see the port for their meaning). */

export async function listDeadLetters(
  { q, t }: Ctx,
  filter: { module?: string; limit?: number } = {},
): Promise<DeadLetter[]> {
  const { where, params } = conditions({ module: filter.module });
  const { rows } = await q.query<DeadLetterRow>(
    `SELECT * FROM ${t.deadLetters} ${where} ORDER BY created_at DESC, seq DESC
     LIMIT $${params.length + 1}`,
    [...params, filter.limit ?? 100],
  );
  return rows.map(toDeadLetter);
}

export async function getDeadLetter({ q, t }: Ctx, id: string): Promise<DeadLetter | null> {
  const { rows } = await q.query<DeadLetterRow>(`SELECT * FROM ${t.deadLetters} WHERE id = $1`, [
    id,
  ]);
  return rows[0] ? toDeadLetter(rows[0]) : null;
}

/** Removes the dead letter and sends its job back as {@link redrivePlan} says. */
export async function redriveDeadLetter(ctx: Ctx, id: string): Promise<Job | null> {
  const { q, t } = ctx;
  // Deleting first makes concurrent redrives of one dead letter race for the row: one wins.
  const deleted = await q.query<DeadLetterRow>(
    `DELETE FROM ${t.deadLetters} WHERE id = $1 RETURNING *`,
    [id],
  );
  const dl = deleted.rows[0];
  if (!dl) return null;
  const row = await jobRow(ctx, dl.job_id, true);
  if (!row) return null;
  const plan = redrivePlan(toJob(row));
  const now = nowIso();
  const { rows } = await q.query<JobRow>(
    `UPDATE ${t.jobs} SET state = $1, failures_since_redrive = $2, updated_at = $3
     WHERE job_id = $4 RETURNING *`,
    [plan.state, plan.failuresSinceRedrive, now, row.job_id],
  );
  await insertOutbox(ctx, row.event_id, plan.subscription, now, plan.outboxJobId);
  return toJob(rows[0]!);
}

export async function discardDeadLetter({ q, t }: Ctx, id: string): Promise<boolean> {
  const res = await q.query(`DELETE FROM ${t.deadLetters} WHERE id = $1`, [id]);
  return (res.rowCount ?? 0) > 0;
}
