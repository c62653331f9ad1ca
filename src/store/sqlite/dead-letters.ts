import type { Database } from 'better-sqlite3';
import { redrivePlan } from '../../core/job-lifecycle.js';
import { nowIso } from '../../core/time.js';
import type { DeadLetter, Job } from '../../core/types.js';
import { conditions, insertOutbox, jobRow, requireJob, toDeadLetter, toJob } from './rows.js';
import type { DeadLetterRow } from './rows.js';

/** The dead-letter statements of the SQLite document store (see the port for their meaning). */

export function listDeadLetters(
  db: Database,
  filter: { module?: string; limit?: number } = {},
): DeadLetter[] {
  const { where, params } = conditions({ module: filter.module });
  const rows = db
    .prepare(`SELECT * FROM dead_letters ${where} ORDER BY created_at DESC, rowid DESC LIMIT ?`)
    .all(...params, filter.limit ?? 100) as DeadLetterRow[];
  return rows.map(toDeadLetter);
}

export function getDeadLetter(db: Database, id: string): DeadLetter | null {
  const row = db.prepare('SELECT * FROM dead_letters WHERE id = ?').get(id) as
    DeadLetterRow | undefined;
  return row ? toDeadLetter(row) : null;
}

/** Removes the dead letter and sends its job back as {@link redrivePlan} says. */
export function redriveDeadLetter(db: Database, id: string): Job | null {
  const dl = db.prepare('SELECT * FROM dead_letters WHERE id = ?').get(id) as
    DeadLetterRow | undefined;
  if (!dl) return null;
  db.prepare('DELETE FROM dead_letters WHERE id = ?').run(id);
  const row = jobRow(db, dl.job_id);
  if (!row) return null;
  const plan = redrivePlan(toJob(row));
  const now = nowIso();
  db.prepare(
    'UPDATE jobs SET state = ?, failures_since_redrive = ?, updated_at = ? WHERE job_id = ?',
  ).run(plan.state, plan.failuresSinceRedrive, now, row.job_id);
  insertOutbox(db, row.event_id, plan.subscription, now, plan.outboxJobId);
  return requireJob(db, row.job_id);
}

export function discardDeadLetter(db: Database, id: string): boolean {
  return db.prepare('DELETE FROM dead_letters WHERE id = ?').run(id).changes > 0;
}
