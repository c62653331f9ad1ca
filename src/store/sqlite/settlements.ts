import type { Database } from 'better-sqlite3';
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

/**
 * Settlements in the SQLite store (see the port's comment in `document-store.ts`). Every
 * caller runs inside the store's `BEGIN IMMEDIATE` transaction, which holds the database's
 * write lock from its start: transactions ending two jobs of one trace cannot interleave, so
 * the later one always sees the earlier one's end.
 */

const OPEN_PLACEHOLDERS = OPEN_JOB_STATES.map(() => '?').join(', ');

/**
 * Called in the transaction that has just moved a job of `correlationId` to an ended state:
 * records the trace's settlement if the trace has settled and was not settled before.
 * Returns true when it recorded one.
 */
export function settleIfDone(db: Database, correlationId: string, at: string): boolean {
  if (db.prepare('SELECT 1 FROM settlements WHERE correlation_id = ?').get(correlationId)) {
    return false; // settled once already: later ends (redrives, replays, its own jobs) do not count
  }
  const open = db
    .prepare(
      `SELECT 1 FROM jobs WHERE correlation_id = ? AND state IN (${OPEN_PLACEHOLDERS}) LIMIT 1`,
    )
    .get(correlationId, ...OPEN_JOB_STATES);
  if (open) return false;
  // An event still waiting for a job of a live module subscribed to its type (a child whose
  // jobs no worker has created yet, a paused module's). Replayed jobs do not count as its
  // job. What counts is the module's version when the event was stored: a module applied
  // after the event never received it, nor did one whose later version added the type (so
  // neither is waited for), while one whose later version dropped the type did receive it.
  const waiting = db
    .prepare(
      `SELECT 1 FROM events e
       JOIN modules m ON m.deleted = 0
       JOIN module_versions v ON v.name = m.name
         AND v.version = (SELECT MAX(v2.version) FROM module_versions v2
                          WHERE v2.name = m.name AND v2.created_at <= e.created_at)
         AND EXISTS (SELECT 1 FROM json_each(v.spec_json, '$.subscribes') s WHERE s.value = e.type)
       WHERE e.correlation_id = ? AND e.type <> ?
         AND NOT EXISTS (SELECT 1 FROM jobs j
                         WHERE j.event_id = e.event_id AND j.module = m.name
                           AND j.replay_id IS NULL)
       LIMIT 1`,
    )
    .get(correlationId, SETTLED_TYPE);
  if (waiting) return false;
  const root = db
    .prepare(
      `SELECT event_id FROM events WHERE correlation_id = ? AND parent_event_id IS NULL
       ORDER BY created_at, rowid LIMIT 1`,
    )
    .get(correlationId) as { event_id: string } | undefined;
  const counts = db
    .prepare('SELECT state, COUNT(*) AS n FROM jobs WHERE correlation_id = ? GROUP BY state')
    .all(correlationId) as { state: string; n: number }[];
  return (
    db
      .prepare(
        `INSERT INTO settlements (correlation_id, root_event_id, settled_at, jobs)
         VALUES (?, ?, ?, ?) ON CONFLICT (correlation_id) DO NOTHING`,
      )
      .run(
        correlationId,
        root?.event_id ?? correlationId,
        at,
        JSON.stringify(jobStateCounts(counts)),
      ).changes > 0
  );
}

interface RawSettlementRow extends Omit<SettlementRow, 'jobs'> {
  jobs: string;
}

function toSettlement(r: RawSettlementRow): Settlement {
  return settlementFromRow({ ...r, jobs: JSON.parse(r.jobs) as SettlementRow['jobs'] });
}

export function getSettlement(db: Database, correlationId: string): Settlement | null {
  const row = db
    .prepare('SELECT * FROM settlements WHERE correlation_id = ?')
    .get(correlationId) as RawSettlementRow | undefined;
  return row ? toSettlement(row) : null;
}

/** Claims open settlements for one relay (see the port): one statement, so claims are disjoint. */
export function claimSettlements(db: Database, claim: SettlementClaim): Settlement[] {
  const rows = db
    .prepare(
      `UPDATE settlements SET claimed_by = @owner, claimed_until = @until
       WHERE correlation_id IN (
         SELECT correlation_id FROM settlements
         WHERE done = 0
           AND (claimed_until IS NULL OR claimed_until <= @now OR claimed_by = @owner)
         ORDER BY settled_at, correlation_id LIMIT @limit)
       RETURNING *`,
    )
    .all(claim) as RawSettlementRow[];
  return rows.map(toSettlement).sort(bySettledAt);
}

/** The settled event if absent (with its outbox row), and its settlement marked raised. */
export function recordSettledEvent(db: Database, event: IonEvent): { created: boolean } {
  const created = insertEventIfAbsent(db, event);
  if (created) insertOutbox(db, event.eventId, null, event.createdAt);
  db.prepare(
    'UPDATE settlements SET done = 1, event_id = ? WHERE correlation_id = ? AND done = 0',
  ).run(event.eventId, event.correlationId);
  return { created };
}

/** Marks an open settlement done without an event. */
export function closeSettlement(db: Database, correlationId: string): void {
  db.prepare('UPDATE settlements SET done = 1 WHERE correlation_id = ? AND done = 0').run(
    correlationId,
  );
}
