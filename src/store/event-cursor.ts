import { ValidationError } from '../core/errors.js';

/**
 * The opaque cursor of `listEvents`: the (created_at, event_id) key of the last event of a
 * page, encoded as base64url JSON. Pages are newest first, so the next page holds the events
 * strictly before that key.
 */
export interface EventCursor {
  createdAt: string;
  eventId: string;
}

export function encodeEventCursor(cursor: EventCursor): string {
  return Buffer.from(JSON.stringify([cursor.createdAt, cursor.eventId]), 'utf8').toString(
    'base64url',
  );
}

/** Throws a ValidationError (400) for anything that is not a cursor this module made. */
export function decodeEventCursor(cursor: string): EventCursor {
  try {
    if (!/^[A-Za-z0-9_-]+$/.test(cursor)) throw new Error('not base64url');
    const parsed: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (
      Array.isArray(parsed) &&
      parsed.length === 2 &&
      typeof parsed[0] === 'string' &&
      typeof parsed[1] === 'string'
    )
      return { createdAt: parsed[0], eventId: parsed[1] };
  } catch {
    // reported below
  }
  throw new ValidationError('invalid cursor: pass the nextCursor of a previous page', [
    { path: 'cursor', message: 'invalid cursor' },
  ]);
}

/** `LIKE` pattern matching values that start with `prefix` (with `ESCAPE '\'`). */
export function likePrefix(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

export const DEFAULT_EVENT_LIMIT = 50;

/**
 * The WHERE clause, parameters and page size of a `listEvents` query, for either adapter:
 * `ph(n)` renders the n-th (1-based) placeholder (`?` for SQLite, `$n` for PostgreSQL).
 * The query orders by `created_at DESC, event_id DESC` and fetches `limit + 1` rows.
 */
export function eventQuery(
  filter: {
    type?: string | undefined;
    source?: string | undefined;
    correlationId?: string | undefined;
    since?: string | undefined;
    until?: string | undefined;
    limit?: number | undefined;
    cursor?: string | undefined;
  },
  ph: (n: number) => string,
): { where: string; params: (string | number)[]; limit: number } {
  const cols: string[] = [];
  const params: (string | number)[] = [];
  const p = (value: string): string => {
    params.push(value);
    return ph(params.length);
  };
  if (filter.type !== undefined) cols.push(`type = ${p(filter.type)}`);
  if (filter.source !== undefined) cols.push(`source = ${p(filter.source)}`);
  if (filter.correlationId !== undefined) cols.push(`correlation_id = ${p(filter.correlationId)}`);
  if (filter.since !== undefined) cols.push(`created_at >= ${p(filter.since)}`);
  if (filter.until !== undefined) cols.push(`created_at < ${p(filter.until)}`);
  if (filter.cursor !== undefined) {
    const c = decodeEventCursor(filter.cursor);
    // A row-value comparison: both databases read it as one range of the
    // (created_at, event_id) index. The equivalent OR form made SQLite read and sort every
    // event between `since` and the cursor on each page (a backfill went quadratic).
    cols.push(`(created_at, event_id) < (${p(c.createdAt)}, ${p(c.eventId)})`);
  }
  const limit = filter.limit ?? DEFAULT_EVENT_LIMIT;
  params.push(limit + 1);
  return {
    where: cols.length ? `WHERE ${cols.join(' AND ')}` : '',
    params,
    limit,
  };
}

/** Cuts the `limit + 1` rows fetched down to a page and its cursor. */
export function eventPage<E extends { createdAt: string; eventId: string }>(
  rows: E[],
  limit: number,
): { events: E[]; nextCursor: string | null } {
  if (rows.length <= limit) return { events: rows, nextCursor: null };
  const events = rows.slice(0, limit);
  const last = events[events.length - 1]!;
  return { events, nextCursor: encodeEventCursor(last) };
}

/**
 * Extra insight conditions (prefix, time range, and `has`: only insights of jobs that also
 * recorded each of these key/value pairs), rendered like {@link eventQuery}. `table` is the
 * insights table's (qualified) name, used by the `has` subqueries.
 */
export function insightExtraConditions(
  filter: {
    valuePrefix?: string | undefined;
    since?: string | undefined;
    until?: string | undefined;
    has?: readonly { key: string; value: string }[] | undefined;
  },
  firstIndex: number,
  ph: (n: number) => string,
  caseInsensitiveLike = false,
  table = 'insights',
): { cols: string[]; params: string[] } {
  const cols: string[] = [];
  const params: string[] = [];
  const p = (value: string): string => {
    params.push(value);
    return ph(firstIndex + params.length - 1);
  };
  if (filter.valuePrefix !== undefined) {
    cols.push(`value LIKE ${p(likePrefix(filter.valuePrefix))} ESCAPE '\\'`);
    // SQLite's LIKE ignores ASCII case: compare the prefix exactly too.
    if (caseInsensitiveLike) {
      const prefix = filter.valuePrefix;
      cols.push(`substr(value, 1, length(${p(prefix)})) = ${p(prefix)}`);
    }
  }
  if (filter.since !== undefined) cols.push(`created_at >= ${p(filter.since)}`);
  if (filter.until !== undefined) cols.push(`created_at < ${p(filter.until)}`);
  // One subquery per pair, each on the (key, value) index: the job must have them all.
  for (const pair of filter.has ?? [])
    cols.push(
      `job_id IN (SELECT h.job_id FROM ${table} h WHERE h.key = ${p(pair.key)} AND h.value = ${p(pair.value)})`,
    );
  return { cols, params };
}
