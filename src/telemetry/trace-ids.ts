import { createHash } from 'node:crypto';

/**
 * Deterministic W3C trace and span ids.
 *
 * One trace per correlation id: its trace id is derived from the correlation id, so every
 * process (server, relay, workers) and every restart puts a correlation's spans in the same
 * trace with no state stored. The spans other processes must name as parents get ids derived
 * from what those processes already know (an event id, a job id), again with nothing stored.
 */

function hashHex(input: string, hexChars: number): string {
  const hex = createHash('sha256').update(input).digest('hex').slice(0, hexChars);
  // All-zero ids are invalid in W3C trace context; a sha256 prefix of zeros is not going to
  // happen, but the rule is cheap to keep.
  return /^0+$/.test(hex) ? `${hex.slice(0, -1)}1` : hex;
}

/** The W3C trace id (32 hex) of a correlation id's trace. */
export function traceIdFor(correlationId: string): string {
  return hashHex(`ion-trace\0${correlationId}`, 32);
}

/**
 * A span id (16 hex) derived from its role and the ids that make it unique, e.g.
 * `spanIdFor('publish', eventId)` or `spanIdFor('commit', jobId)`.
 */
export function spanIdFor(role: string, ...parts: (string | number)[]): string {
  return hashHex(`ion-span\0${role}\0${parts.join('\0')}`, 16);
}

/** A parsed W3C `traceparent`. */
export interface TraceParent {
  traceId: string;
  spanId: string;
  sampled: boolean;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** Reads a `traceparent` header value; null when it is not a valid version-00 one. */
export function parseTraceparent(value: string | undefined): TraceParent | null {
  if (value === undefined) return null;
  const m = TRACEPARENT.exec(value.trim());
  if (m === null || m[1] === 'ff') return null;
  const [, , traceId, spanId, flags] = m as unknown as [string, string, string, string, string];
  if (/^0+$/.test(traceId) || /^0+$/.test(spanId)) return null;
  return { traceId, spanId, sampled: (parseInt(flags, 16) & 1) === 1 };
}

export function formatTraceparent(parent: TraceParent): string {
  return `00-${parent.traceId}-${parent.spanId}-${parent.sampled ? '01' : '00'}`;
}

/**
 * Ids the next span must take, consumed by the SDK's id generator (see sdk.ts): the tracer
 * asks its id generator for a span id (and, for a root span, a trace id) synchronously
 * inside `startSpan`, so setting them right before and clearing right after is exact.
 */
let pinned: { traceId?: string; spanId?: string } | null = null;

export function withPinnedIds<T>(ids: { traceId?: string; spanId?: string }, start: () => T): T {
  pinned = ids;
  try {
    return start();
  } finally {
    pinned = null;
  }
}

/** The pinned trace id for the span being started, if any (read by the id generator). */
export function pinnedTraceId(): string | undefined {
  return pinned?.traceId;
}

/** The pinned span id for the span being started, if any; consumed once. */
export function takePinnedSpanId(): string | undefined {
  const id = pinned?.spanId;
  if (pinned !== null) pinned = { ...pinned, spanId: undefined };
  return id;
}
