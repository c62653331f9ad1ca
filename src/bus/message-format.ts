import type { BusMessage } from './event-bus.js';
import type { IonEvent } from '../core/types.js';

/**
 * What travels on the bus: a pointer to an event stored in the document store. `jobId` is set
 * when the message asks for a job other than the module's ordinary one on the event (a
 * replayed job); such a message is identified by the job, so that several replays of one
 * event each hold their own copy in the subscription.
 *
 * `traceparent` (and `tracestate`), when tracing is on, is the W3C trace context of the relay
 * hop that published the message, so the job it starts joins the same trace. Readers that do
 * not trace ignore it; a message without it is still valid.
 *
 * This format is shared by the producers (the outbox relay, the control plane) and the
 * consumer (the dispatcher), so it lives with the bus rather than with either side.
 */
export interface EventNotice {
  eventId: string;
  type: string;
  correlationId: string;
  jobId?: string;
  traceparent?: string;
  tracestate?: string;
}

/** W3C trace context carried by a notice (both optional). */
export interface NoticeTrace {
  traceparent?: string;
  tracestate?: string;
}

export function noticeMessage(
  event: Pick<IonEvent, 'eventId' | 'type' | 'correlationId'>,
  jobId: string | null = null,
  trace: NoticeTrace | null = null,
): BusMessage {
  const notice: EventNotice = {
    eventId: event.eventId,
    type: event.type,
    correlationId: event.correlationId,
  };
  if (jobId !== null) notice.jobId = jobId;
  if (trace?.traceparent !== undefined) notice.traceparent = trace.traceparent;
  if (trace?.tracestate !== undefined) notice.tracestate = trace.tracestate;
  return { id: jobId ?? event.eventId, topic: event.type, body: JSON.stringify(notice) };
}

/** Parses a bus message body; returns a reason string when it is not a valid notice. */
export function parseNotice(message: BusMessage): EventNotice | string {
  let doc: unknown;
  try {
    doc = JSON.parse(message.body);
  } catch {
    return `body is not JSON (${JSON.stringify(message.body.slice(0, 80))})`;
  }
  if (typeof doc !== 'object' || doc === null) return 'body is not a JSON object';
  const { eventId, type, correlationId, jobId, traceparent, tracestate } = doc as Record<
    string,
    unknown
  >;
  if (typeof eventId !== 'string' || eventId === '') return 'body has no eventId';
  if (typeof type !== 'string') return 'body has no type';
  if (typeof correlationId !== 'string') return 'body has no correlationId';
  const notice: EventNotice = { eventId, type, correlationId };
  if (jobId !== undefined) {
    if (typeof jobId !== 'string' || jobId === '') return 'body has a jobId that is not a string';
    notice.jobId = jobId;
  }
  // Trace context is advisory: a malformed one is dropped, never a reason to park the message.
  if (typeof traceparent === 'string') notice.traceparent = traceparent;
  if (typeof tracestate === 'string' && notice.traceparent !== undefined)
    notice.tracestate = tracestate;
  return notice;
}
