import type { BusMessage } from '../bus/event-bus.js';
import type { IonEvent } from '../core/types.js';

/**
 * What travels on the bus: a pointer to an event stored in the document store. `jobId` is set
 * when the message asks for a job other than the module's ordinary one on the event (a
 * replayed job); such a message is identified by the job, so that several replays of one
 * event each hold their own copy in the subscription.
 */
export interface EventNotice {
  eventId: string;
  type: string;
  correlationId: string;
  jobId?: string;
}

export function noticeMessage(
  event: Pick<IonEvent, 'eventId' | 'type' | 'correlationId'>,
  jobId: string | null = null,
): BusMessage {
  const notice: EventNotice = {
    eventId: event.eventId,
    type: event.type,
    correlationId: event.correlationId,
  };
  if (jobId !== null) notice.jobId = jobId;
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
  const { eventId, type, correlationId, jobId } = doc as Record<string, unknown>;
  if (typeof eventId !== 'string' || eventId === '') return 'body has no eventId';
  if (typeof type !== 'string') return 'body has no type';
  if (typeof correlationId !== 'string') return 'body has no correlationId';
  if (jobId === undefined) return { eventId, type, correlationId };
  if (typeof jobId !== 'string' || jobId === '') return 'body has a jobId that is not a string';
  return { eventId, type, correlationId, jobId };
}
