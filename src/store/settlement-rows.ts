import { TRACE_SETTLED, type Settlement } from '../core/trace-settled.js';
import { JOB_STATES, jobHasEnded, jobStateCounts, type JobStateCounts } from '../core/types.js';

/**
 * What both stores share about settlements (the `ion.trace.settled` fan-in): the job states
 * that keep a trace open, the event type the rule leaves out, and the row mapping.
 */

/** Job states that keep a trace open: every state `jobHasEnded` does not count as ended. */
export const OPEN_JOB_STATES: readonly string[] = JOB_STATES.filter((s) => !jobHasEnded(s));

/** Events of this type need no jobs for their trace to settle (they come after it). */
export const SETTLED_TYPE = TRACE_SETTLED;

/** A settlement row, with `jobs` already decoded from JSON. */
export interface SettlementRow {
  correlation_id: string;
  root_event_id: string;
  settled_at: string;
  jobs: Partial<JobStateCounts>;
  /** 0/1 in SQLite, a boolean in PostgreSQL. */
  done: number | boolean;
  event_id: string | null;
}

export function settlementFromRow(r: SettlementRow): Settlement {
  return {
    correlationId: r.correlation_id,
    rootEventId: r.root_event_id,
    settledAt: r.settled_at,
    jobs: jobStateCounts(Object.entries(r.jobs).map(([state, n]) => ({ state, n: n ?? 0 }))),
    done: Boolean(r.done),
    eventId: r.event_id,
  };
}

/** Oldest first, as a claim takes them (its RETURNING has no order). */
export function bySettledAt(a: Settlement, b: Settlement): number {
  if (a.settledAt !== b.settledAt) return a.settledAt < b.settledAt ? -1 : 1;
  return a.correlationId < b.correlationId ? -1 : a.correlationId > b.correlationId ? 1 : 0;
}
