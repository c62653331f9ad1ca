import type { Settlement } from '../../core/trace-settled.js';
import type { SettlementClaim } from '../document-store.js';
import type { IonEvent } from '../../core/types.js';
import { jobStateCounts } from '../../core/types.js';
import {
  bySettledAt,
  OPEN_JOB_STATES,
  SETTLED_TYPE,
  settlementFromRow,
} from '../settlement-rows.js';
import type { SettlementRow } from '../settlement-rows.js';
import { insertEventIfAbsent, insertOutbox } from './rows.js';
import type { Ctx } from './rows.js';

/**
 * Settlements in the Postgres store (see the port's comment in `document-store.ts`).
 *
 * Under READ COMMITTED, two transactions ending a trace's last two jobs at once would each see
 * the other's job still running and both miss the settlement. So the check first takes a
 * transaction-level advisory lock keyed on the trace: the second transaction waits there
 * until the first commits, and its next statements (each a fresh snapshot) see the first's
 * end. The lock is taken after the job's own row lock and nothing locks a job row while
 * holding it, so it adds no deadlock.
 */

/**
 * Called in the transaction that has just moved a job of `correlationId` to an ended state:
 * records the trace's settlement if the trace has settled and was not settled before.
 * Returns true when it recorded one.
 */
export async function settleIfDone(ctx: Ctx, correlationId: string, at: string): Promise<boolean> {
  const { q, t } = ctx;
  await q.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [
    `ion.document-store.settle:${t.settlements}:${correlationId}`,
  ]);
  const settled = await q.query(`SELECT 1 FROM ${t.settlements} WHERE correlation_id = $1`, [
    correlationId,
  ]);
  // Settled once already: later ends (redrives, replays, its own jobs) do not count.
  if (settled.rowCount) return false;
  const open = await q.query(
    `SELECT 1 FROM ${t.jobs} WHERE correlation_id = $1 AND state = ANY($2::text[]) LIMIT 1`,
    [correlationId, OPEN_JOB_STATES],
  );
  if (open.rowCount) return false;
  // An event still waiting for a job of a live module subscribed to its type (a child whose
  // jobs no worker has created yet, a paused module's). Replayed jobs do not count as its
  // job. What counts is the module's version when the event was stored: a module applied
  // after the event never received it, nor did one whose later version added the type (so
  // neither is waited for), while one whose later version dropped the type did receive it.
  const waiting = await q.query(
    `SELECT 1 FROM ${t.events} e
     JOIN ${t.modules} m ON NOT m.deleted
     JOIN ${t.moduleVersions} v ON v.name = m.name
       AND v.version = (SELECT MAX(v2.version) FROM ${t.moduleVersions} v2
                        WHERE v2.name = m.name AND v2.created_at <= e.created_at)
       AND (v.spec_json::jsonb -> 'subscribes') @> jsonb_build_array(e.type)
     WHERE e.correlation_id = $1 AND e.type <> $2
       AND NOT EXISTS (SELECT 1 FROM ${t.jobs} j
                       WHERE j.event_id = e.event_id AND j.module = m.name
                         AND j.replay_id IS NULL)
     LIMIT 1`,
    [correlationId, SETTLED_TYPE],
  );
  if (waiting.rowCount) return false;
  const root = await q.query<{ event_id: string }>(
    `SELECT event_id FROM ${t.events} WHERE correlation_id = $1 AND parent_event_id IS NULL
     ORDER BY created_at, seq LIMIT 1`,
    [correlationId],
  );
  const counts = await q.query<{ state: string; n: string }>(
    `SELECT state, COUNT(*) AS n FROM ${t.jobs} WHERE correlation_id = $1 GROUP BY state`,
    [correlationId],
  );
  const inserted = await q.query(
    `INSERT INTO ${t.settlements} (correlation_id, root_event_id, settled_at, jobs)
     VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (correlation_id) DO NOTHING`,
    [
      correlationId,
      root.rows[0]?.event_id ?? correlationId,
      at,
      JSON.stringify(jobStateCounts(counts.rows)),
    ],
  );
  return (inserted.rowCount ?? 0) > 0;
}

export async function getSettlement(
  { q, t }: Ctx,
  correlationId: string,
): Promise<Settlement | null> {
  const { rows } = await q.query<SettlementRow>(
    `SELECT * FROM ${t.settlements} WHERE correlation_id = $1`,
    [correlationId],
  );
  return rows[0] ? settlementFromRow(rows[0]) : null;
}

/** Claims open settlements for one relay (see the port); SKIP LOCKED keeps claims disjoint. */
export async function claimSettlements(
  { q, t }: Ctx,
  claim: SettlementClaim,
): Promise<Settlement[]> {
  const { rows } = await q.query<SettlementRow>(
    `UPDATE ${t.settlements} SET claimed_by = $1, claimed_until = $2
     WHERE correlation_id IN (
       SELECT correlation_id FROM ${t.settlements}
       WHERE NOT done AND (claimed_until IS NULL OR claimed_until <= $3 OR claimed_by = $1)
       ORDER BY settled_at, correlation_id LIMIT $4
       FOR UPDATE SKIP LOCKED)
     RETURNING *`,
    [claim.owner, claim.until, claim.now, claim.limit],
  );
  return rows.map(settlementFromRow).sort(bySettledAt);
}

/** The settled event if absent (with its outbox row), and its settlement marked raised. */
export async function recordSettledEvent(ctx: Ctx, event: IonEvent): Promise<{ created: boolean }> {
  const created = await insertEventIfAbsent(ctx, event);
  if (created) await insertOutbox(ctx, event.eventId, null, event.createdAt);
  await ctx.q.query(
    `UPDATE ${ctx.t.settlements} SET done = true, event_id = $1
     WHERE correlation_id = $2 AND NOT done`,
    [event.eventId, event.correlationId],
  );
  return { created };
}

/** Marks an open settlement done without an event. */
export async function closeSettlement({ q, t }: Ctx, correlationId: string): Promise<void> {
  await q.query(`UPDATE ${t.settlements} SET done = true WHERE correlation_id = $1 AND NOT done`, [
    correlationId,
  ]);
}
