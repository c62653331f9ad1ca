import { trace } from '@opentelemetry/api';
import type { IonEvent } from '../core/types.js';
import { spanIdFor } from './trace-ids.js';
import { SpanKind, type Tracing } from './tracing.js';

/** The part of the control layer this needs: an observer of stored root events. */
export interface PublishObservable {
  observe(observer: { eventPublished?(event: IonEvent): void }): () => void;
}

/**
 * An `ion.publish` span for every root event stored through this process (the API's
 * `POST /v1/events`, the gateway and CloudEvents all publish through the same operation):
 * from the event's creation to its row and outbox entry being stored. It is the root of the
 * correlation's trace, with a span id derived from the event id (as a job's `ion.event` spans) so the relay hop (maybe in
 * another process) hangs under it; the HTTP request that carried it, when traced, is linked.
 * Returns the function that stops observing.
 */
export function tracePublishes(control: PublishObservable, tracing: Tracing): () => void {
  if (!tracing.enabled) return () => undefined;
  return control.observe({
    eventPublished(event) {
      const request = trace.getActiveSpan()?.spanContext();
      const span = tracing.start('ion.publish', {
        place: { traceOf: event.correlationId },
        kind: SpanKind.PRODUCER,
        spanId: spanIdFor('event', event.eventId),
        startTime: Date.parse(event.createdAt),
        attributes: {
          'ion.event.id': event.eventId,
          'ion.event.type': event.type,
          'ion.correlation.id': event.correlationId,
          'ion.event.source': event.source,
          'ion.bytes.in': event.files.reduce((n, f) => n + f.size, 0),
        },
        ...(request === undefined ? {} : { links: [{ context: request }] }),
      });
      span.end();
    },
  });
}
