import { settledEventId } from './ids.js';
import type { BlobRef, IonEvent, JobStateCounts, Trace } from './types.js';

/**
 * The fan-in Ion builds in: once every job descending from a root event has ended, Ion raises
 * one `ion.trace.settled` event in that trace, which any module may subscribe to. This file
 * holds the pure parts (names, the reserved prefix, the event and its `trace.json`); the stores
 * decide when a trace settles, and `src/relay/settlement-relay.ts` raises the event.
 */

/** The system event raised once per trace when it has settled. */
export const TRACE_SETTLED = 'ion.trace.settled';

/** Event types Ion raises itself; root events and modules' `publishes` cannot use them. */
export const RESERVED_PREFIX = 'ion.';

/** Every system event type a module may subscribe to. */
export const SYSTEM_EVENT_TYPES: readonly string[] = [TRACE_SETTLED];

/** The source of system events (`api` for root events, a module name for child events). */
export const SYSTEM_SOURCE = 'ion';

/** The file of an `ion.trace.settled` event: the whole trace, as JSON. */
export const TRACE_FILE = 'trace.json';

export function isReservedEventType(type: string): boolean {
  return type.startsWith(RESERVED_PREFIX);
}

/**
 * Why a module cannot subscribe to `type`, or null when it can: an `ion.*` type other than a
 * system event would never arrive (nothing can publish it).
 */
export function subscribeProblem(type: string): string | null {
  if (!isReservedEventType(type) || SYSTEM_EVENT_TYPES.includes(type)) return null;
  return `"${type}" is reserved: event types starting with "${RESERVED_PREFIX}" are Ion's system events (${SYSTEM_EVENT_TYPES.join(', ')})`;
}

/** The message for a producer (a root event, a module's `publishes`) naming an `ion.*` type. */
export function reservedTypeMessage(type: string): string {
  return `"${type}" is reserved: event types starting with "${RESERVED_PREFIX}" are raised by Ion only`;
}

/**
 * A trace that has settled: recorded by the transaction that ended its last job, at most once
 * per correlation id; `eventId` is set once its `ion.trace.settled` event is stored.
 */
export interface Settlement {
  correlationId: string;
  rootEventId: string;
  /** When the last job ended (ISO-8601). */
  settledAt: string;
  /** The trace's jobs by state at that moment. */
  jobs: JobStateCounts;
  /**
   * Handled: its `ion.trace.settled` event is stored, or it was closed without one because no
   * module subscribed to `ion.trace.settled` (an event nobody is subscribed to goes nowhere).
   */
  done: boolean;
  /** The `ion.trace.settled` event, once raised; null while open or when closed without one. */
  eventId: string | null;
}

/** Total of the counts. */
export function jobTotal(jobs: JobStateCounts): number {
  return Object.values(jobs).reduce((a, b) => a + b, 0);
}

/** What `trace.json` holds: the settlement and the whole trace at the time it is raised. */
export interface TraceSummary {
  correlationId: string;
  rootEventId: string;
  rootEventType: string | null;
  settledAt: string;
  /** Jobs by state when the trace settled, and their total. */
  counts: JobStateCounts & { jobs: number };
  events: IonEvent[];
  jobs: {
    jobId: string;
    module: string;
    eventId: string;
    state: string;
    attempts: number;
    lastError: string | null;
    replayId: string | null;
    outputs: { path: string; sha256: string; size: number }[];
  }[];
  insights: { module: string; eventId: string; jobId: string; key: string; value: string }[];
}

export function traceSummary(settlement: Settlement, trace: Trace): TraceSummary {
  const root = trace.events.find((e) => e.eventId === settlement.rootEventId) ?? null;
  return {
    correlationId: settlement.correlationId,
    rootEventId: settlement.rootEventId,
    rootEventType: root?.type ?? null,
    settledAt: settlement.settledAt,
    counts: { ...settlement.jobs, jobs: jobTotal(settlement.jobs) },
    events: trace.events.filter((e) => e.type !== TRACE_SETTLED),
    jobs: trace.jobs.map((j) => ({
      jobId: j.jobId,
      module: j.module,
      eventId: j.eventId,
      state: j.state,
      attempts: j.attempts,
      lastError: j.lastError,
      replayId: j.replayId,
      outputs: j.outputs,
    })),
    insights: trace.insights.map((i) => ({
      module: i.module,
      eventId: i.eventId,
      jobId: i.jobId,
      key: i.key,
      value: i.value,
    })),
  };
}

/**
 * The `ion.trace.settled` event of a settlement: a pure function of the settlement, its root
 * event and the `trace.json` blob, with an id derived from the correlation id, so two
 * processes raising it build the same event (the store keeps the first).
 */
export function settledEvent(
  settlement: Settlement,
  root: IonEvent | null,
  traceFile: BlobRef,
): IonEvent {
  const { jobs } = settlement;
  return {
    eventId: settledEventId(settlement.correlationId),
    type: TRACE_SETTLED,
    correlationId: settlement.correlationId,
    parentEventId: settlement.rootEventId,
    source: SYSTEM_SOURCE,
    sourceJobId: null,
    data: [
      ...(root?.data ?? []),
      { key: 'ion.rootEventId', value: settlement.rootEventId },
      { key: 'ion.rootEventType', value: root?.type ?? '' },
      { key: 'ion.jobs', value: String(jobTotal(jobs)) },
      { key: 'ion.succeeded', value: String(jobs.succeeded) },
      { key: 'ion.dead_lettered', value: String(jobs.dead_lettered) },
      { key: 'ion.cancelled', value: String(jobs.cancelled) },
    ],
    files: [{ path: TRACE_FILE, sha256: traceFile.sha256, size: traceFile.size }],
    createdAt: settlement.settledAt,
  };
}
