import { NotFoundError, ValidationError } from '../core/errors.js';
import type { FileRef, Insight, IonEvent } from '../core/types.js';
import type { DocumentStore, EventFilter, InsightFilter } from '../store/document-store.js';

/** An event's ancestry (root first, its parent last) and its descendants (creation order). */
export interface Lineage {
  event: IonEvent;
  ancestors: IonEvent[];
  descendants: IonEvent[];
}

/** An insight with the event it was recorded on: its type and files (blob references). */
export interface InsightHit extends Insight {
  event: { eventId: string; type: string; files: FileRef[] } | null;
}

/** Parses a time bound (any `Date.parse` form) into the stores' ISO-8601 form. */
export function isoTime(name: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const ms = Date.parse(value);
  if (Number.isNaN(ms))
    throw new ValidationError(`${name} "${value}" is not a date-time (use ISO 8601)`, [
      { path: name, message: 'not an ISO 8601 date-time' },
    ]);
  return new Date(ms).toISOString();
}

function checkQueryLimit(limit: number | undefined): void {
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1 || limit > 1000))
    throw new ValidationError(`limit must be a whole number from 1 to 1000, got ${limit}`, [
      { path: 'limit', message: 'must be a whole number from 1 to 1000' },
    ]);
}

export function listEvents(
  store: DocumentStore,
  filter: EventFilter,
): Promise<{ events: IonEvent[]; nextCursor: string | null }> {
  checkQueryLimit(filter.limit);
  const since = isoTime('since', filter.since);
  const until = isoTime('until', filter.until);
  return store.listEvents({
    ...filter,
    ...(since === undefined ? {} : { since }),
    ...(until === undefined ? {} : { until }),
  });
}

/**
 * Ancestry and descendants of one event. Reads the whole trace of its correlation id and
 * walks it in memory: fine for traces of thousands of events, not for huge fan-outs.
 */
export async function lineage(store: DocumentStore, eventId: string): Promise<Lineage> {
  const event = await store.getEvent(eventId);
  if (event === null) throw new NotFoundError(`event ${eventId} does not exist`);
  const trace = await store.trace(event.correlationId);
  const byId = new Map(trace.events.map((e) => [e.eventId, e]));
  const ancestors: IonEvent[] = [];
  const seen = new Set([event.eventId]);
  let parentId = event.parentEventId;
  while (parentId !== null && !seen.has(parentId)) {
    seen.add(parentId);
    const parent = byId.get(parentId) ?? (await store.getEvent(parentId));
    if (parent === null) break; // a dangling parent: the ancestry ends there
    ancestors.unshift(parent);
    parentId = parent.parentEventId;
  }
  const inTree = new Set([event.eventId]);
  const descendants: IonEvent[] = [];
  // Trace events are in creation order and a child is created after its parent, but equal
  // timestamps can put a child first: repeat until nothing changes.
  let grew = true;
  while (grew) {
    grew = false;
    for (const e of trace.events) {
      if (inTree.has(e.eventId) || e.parentEventId === null || !inTree.has(e.parentEventId))
        continue;
      inTree.add(e.eventId);
      descendants.push(e);
      grew = true;
    }
  }
  const order = new Map(trace.events.map((e, i) => [e.eventId, i]));
  descendants.sort((a, b) => order.get(a.eventId)! - order.get(b.eventId)!);
  return { event, ancestors, descendants };
}

/** An insight query as the API takes it: the store's filter, `has` as `key=value` terms. */
export type InsightQuery = Omit<InsightFilter, 'has'> & { has?: readonly string[] };

/** At most this many `has` pairs in one insight query (each is a subquery). */
export const MAX_HAS_PAIRS = 10;

/**
 * Parses `has` terms of the form `key=value` (split at the first `=`, so the value may hold
 * `=`; the key may not be empty) into pairs for {@link InsightFilter.has}.
 */
export function parseHas(terms: readonly string[] | undefined): { key: string; value: string }[] {
  if (terms === undefined) return [];
  if (terms.length > MAX_HAS_PAIRS)
    throw new ValidationError(
      `has: at most ${MAX_HAS_PAIRS} key=value pairs, got ${terms.length}`,
      [{ path: 'has', message: `at most ${MAX_HAS_PAIRS} pairs` }],
    );
  return terms.map((term, i) => {
    const at = term.indexOf('=');
    if (at < 1)
      throw new ValidationError(`has "${term}" is not key=value (for example label=car)`, [
        { path: `has/${i}`, message: 'must be key=value with a non-empty key' },
      ]);
    return { key: term.slice(0, at), value: term.slice(at + 1) };
  });
}

/** Insights matching `filter`, each with a summary of its event (one read per distinct event). */
export async function queryInsights(
  store: DocumentStore,
  query: InsightQuery,
): Promise<InsightHit[]> {
  const { has, ...filter } = query;
  checkQueryLimit(filter.limit);
  const since = isoTime('since', filter.since);
  const until = isoTime('until', filter.until);
  const pairs = parseHas(has);
  const insights = await store.listInsights({
    ...filter,
    ...(since === undefined ? {} : { since }),
    ...(until === undefined ? {} : { until }),
    ...(pairs.length > 0 ? { has: pairs } : {}),
  });
  const events = new Map<string, IonEvent | null>();
  for (const insight of insights)
    if (!events.has(insight.eventId))
      events.set(insight.eventId, await store.getEvent(insight.eventId));
  return insights.map((insight) => {
    const e = events.get(insight.eventId) ?? null;
    return {
      ...insight,
      event: e === null ? null : { eventId: e.eventId, type: e.type, files: e.files },
    };
  });
}
