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
import type { Ctx, EventRow, InsightRow, JobRow, OutboxRow } from './rows.js';

/**
 * The event statements of the Postgres document store: root events with their outbox rows,
 * the outbox the relay drains, and the queries over events, insights and traces.
 */

export async function insertRootEvent(
  ctx: Ctx,
  event: IonEvent,
): Promise<{ event: IonEvent; created: boolean }> {
  const created = await insertEventIfAbsent(ctx, event);
  if (created) await insertOutbox(ctx, event.eventId, null, event.createdAt);
  return { event: (await eventRow(ctx, event.eventId)) ?? event, created };
}

export async function pendingOutbox({ q, t }: Ctx, limit: number): Promise<OutboxEntry[]> {
  const { rows } = await q.query<OutboxRow>(
    `SELECT o.id, o.event_id, e.type, e.correlation_id, o.subscription, o.job_id
     FROM ${t.outbox} o JOIN ${t.events} e ON e.event_id = o.event_id
     WHERE o.published_at IS NULL ORDER BY o.id LIMIT $1`,
    [limit],
  );
  return rows.map(toOutboxEntry);
}

export async function markPublished({ q, t }: Ctx, ids: string[]): Promise<void> {
  // Ids are ours (decimal bigints); anything else names no row and is skipped.
  const valid = ids.filter((id) => /^[0-9]{1,18}$/.test(id));
  if (valid.length === 0) return;
  await q.query(
    `UPDATE ${t.outbox} SET published_at = $1
     WHERE id = ANY($2::bigint[]) AND published_at IS NULL`,
    [nowIso(), valid],
  );
}

export async function listInsights({ q, t }: Ctx, filter: InsightFilter = {}): Promise<Insight[]> {
  const base = conditions({
    module: filter.module,
    key: filter.key,
    value: filter.value,
    correlation_id: filter.correlationId,
    job_id: filter.jobId,
  });
  const extra = insightExtraConditions(
    filter,
    base.params.length + 1,
    (n) => `$${n}`,
    false,
    t.insights,
  );
  const where = [base.where.replace(/^WHERE /, ''), ...extra.cols].filter(Boolean);
  const params = [...base.params, ...extra.params];
  const { rows } = await q.query<InsightRow>(
    `SELECT * FROM ${t.insights} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id LIMIT $${params.length + 1}`,
    [...params, filter.limit ?? 1000],
  );
  return rows.map(toInsight);
}

/** Run by the store in one REPEATABLE READ snapshot, so the three reads agree. */
export async function trace({ q, t }: Ctx, correlationId: string): Promise<Trace> {
  const events = await q.query<EventRow>(
    `SELECT * FROM ${t.events} WHERE correlation_id = $1 ORDER BY created_at, seq`,
    [correlationId],
  );
  const jobs = await q.query<JobRow>(
    `SELECT * FROM ${t.jobs} WHERE correlation_id = $1 ORDER BY created_at, seq`,
    [correlationId],
  );
  const insights = await q.query<InsightRow>(
    `SELECT * FROM ${t.insights} WHERE correlation_id = $1 ORDER BY id`,
    [correlationId],
  );
  return {
    correlationId,
    events: events.rows.map(toEvent),
    jobs: jobs.rows.map(toJob),
    insights: insights.rows.map(toInsight),
  };
}

export async function listEvents(
  { q, t }: Ctx,
  filter: EventFilter,
): Promise<{ events: IonEvent[]; nextCursor: string | null }> {
  const { where, params, limit } = eventQuery(filter, (n) => `$${n}`);
  const { rows } = await q.query<EventRow>(
    `SELECT * FROM ${t.events} ${where} ORDER BY created_at DESC, event_id DESC LIMIT $${params.length}`,
    params,
  );
  return eventPage(rows.map(toEvent), limit);
}
