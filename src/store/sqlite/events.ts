import type { Database } from 'better-sqlite3';
import { nowIso } from '../../core/time.js';
import type { Insight, IonEvent, Trace } from '../../core/types.js';
import type { EventFilter, InsightFilter, OutboxEntry } from '../document-store.js';
import { eventPage, eventQuery, insightExtraConditions } from '../event-cursor.js';
import { toOutboxEntry } from '../rows.js';
import {
  conditions,
  eventRow,
  insertEventIfAbsent,
  insertOutbox,
  toEvent,
  toInsight,
  toJob,
} from './rows.js';
import type { EventRow, InsightRow, JobRow, OutboxRow } from './rows.js';

/**
 * The event statements of the SQLite document store: root events with their outbox rows,
 * the outbox the relay drains, and the queries over events, insights and traces.
 */

export function insertRootEvent(
  db: Database,
  event: IonEvent,
): { event: IonEvent; created: boolean } {
  const created = insertEventIfAbsent(db, event);
  if (created) insertOutbox(db, event.eventId, null, event.createdAt);
  return { event: eventRow(db, event.eventId) ?? event, created };
}

export function pendingOutbox(db: Database, limit: number): OutboxEntry[] {
  const rows = db
    .prepare(
      `SELECT o.id, o.event_id, e.type, e.correlation_id, o.subscription, o.job_id
       FROM outbox o JOIN events e ON e.event_id = o.event_id
       WHERE o.published_at IS NULL ORDER BY o.id LIMIT ?`,
    )
    .all(limit) as OutboxRow[];
  return rows.map(toOutboxEntry);
}

export function markPublished(db: Database, ids: string[]): void {
  const now = nowIso();
  const update = db.prepare(
    'UPDATE outbox SET published_at = ? WHERE id = ? AND published_at IS NULL',
  );
  for (const id of ids) {
    const n = Number(id);
    if (Number.isSafeInteger(n)) update.run(now, n);
  }
}

export function listInsights(db: Database, filter: InsightFilter = {}): Insight[] {
  const base = conditions({
    module: filter.module,
    key: filter.key,
    value: filter.value,
    correlation_id: filter.correlationId,
    job_id: filter.jobId,
  });
  const extra = insightExtraConditions(filter, 1, () => '?', true);
  const where = [base.where.replace(/^WHERE /, ''), ...extra.cols].filter(Boolean);
  const params = [...base.params, ...extra.params];
  const rows = db
    .prepare(
      `SELECT * FROM insights ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id LIMIT ?`,
    )
    .all(...params, filter.limit ?? 1000) as InsightRow[];
  return rows.map(toInsight);
}

export function trace(db: Database, correlationId: string): Trace {
  const events = db
    .prepare('SELECT * FROM events WHERE correlation_id = ? ORDER BY created_at, rowid')
    .all(correlationId) as EventRow[];
  const jobs = db
    .prepare('SELECT * FROM jobs WHERE correlation_id = ? ORDER BY created_at, rowid')
    .all(correlationId) as JobRow[];
  const insights = db
    .prepare('SELECT * FROM insights WHERE correlation_id = ? ORDER BY id')
    .all(correlationId) as InsightRow[];
  return {
    correlationId,
    events: events.map(toEvent),
    jobs: jobs.map(toJob),
    insights: insights.map(toInsight),
  };
}

export function listEvents(
  db: Database,
  filter: EventFilter,
): { events: IonEvent[]; nextCursor: string | null } {
  const { where, params, limit } = eventQuery(filter, () => '?');
  const rows = db
    .prepare(`SELECT * FROM events ${where} ORDER BY created_at DESC, event_id DESC LIMIT ?`)
    .all(...params) as EventRow[];
  return eventPage(rows.map(toEvent), limit);
}
