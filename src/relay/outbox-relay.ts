import type { Logger } from 'pino';
import type { BusMessage, EventBus } from '../bus/event-bus.js';
import { NotFoundError } from '../core/errors.js';
import { noticeMessage } from '../bus/message-format.js';
import type { DocumentStore, OutboxEntry } from '../store/document-store.js';
import { spanIdFor } from '../telemetry/trace-ids.js';
import { SpanKind, SpanStatusCode, Tracing, derivedContext } from '../telemetry/tracing.js';
import { BatchLoop } from './batch-loop.js';

export interface OutboxRelayOptions {
  pollIntervalMs?: number;
  batchSize?: number;
  /** A span per published entry (the relay hop), its context carried in the message. */
  tracing?: Tracing;
}

/**
 * Publishes committed events from the store's outbox to the bus, then marks them published.
 * At-least-once: a crash between publish and mark publishes again, and consumers dedupe by
 * event id (the commit protocol's step 1). Several relays may run at once.
 */
export class OutboxRelay {
  private readonly batchSize: number;
  private readonly loop: BatchLoop;
  private readonly tracing: Tracing;

  constructor(
    private readonly store: DocumentStore,
    private readonly bus: EventBus,
    private readonly logger: Logger,
    options: OutboxRelayOptions = {},
  ) {
    this.batchSize = options.batchSize ?? 200;
    this.tracing = options.tracing ?? Tracing.off;
    this.loop = new BatchLoop({
      pass: () => this.publishBatch(),
      batchSize: this.batchSize,
      pollIntervalMs: options.pollIntervalMs ?? 250,
      logger,
      failureMessage: 'outbox relay could not publish; backing off',
    });
  }

  start(): void {
    this.loop.start();
  }

  /** Publish now rather than at the next poll (called after a commit in this process). */
  wake(): void {
    this.loop.wake();
  }

  /** One pass: returns how many rows were handled. */
  async publishBatch(): Promise<number> {
    const entries = await this.store.pendingOutbox(this.batchSize);
    if (entries.length === 0) return 0;
    const done: string[] = [];
    for (const entry of entries) {
      if (this.tracing.enabled) await this.publishTraced(entry);
      else await this.publishOne(entry, noticeMessage(entry, entry.jobId));
      done.push(entry.id);
    }
    await this.store.markPublished(done);
    return entries.length;
  }

  private async publishOne(entry: OutboxEntry, message: BusMessage): Promise<void> {
    try {
      if (entry.subscription === null) await this.bus.publish(message);
      else await this.bus.sendTo(entry.subscription, message);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
      // The target module was deleted since: nothing can receive it.
      this.logger.warn(
        { eventId: entry.eventId, subscription: entry.subscription },
        'outbox entry targets a missing subscription; dropped',
      );
    }
  }

  /**
   * The relay hop as a span under the span of the event's raising (`ion.event` under the
   * job's commit, or `ion.publish` for a root event: both ids derive from the event id),
   * carried in the message so the job it starts is a child of this hop.
   */
  private async publishTraced(entry: OutboxEntry): Promise<void> {
    const parentSpanId = spanIdFor('event', entry.eventId);
    const span = this.tracing.start('ion.relay.publish', {
      place: { parent: derivedContext(entry.correlationId, parentSpanId) },
      kind: SpanKind.PRODUCER,
      attributes: {
        'ion.event.id': entry.eventId,
        'ion.event.type': entry.type,
        'ion.correlation.id': entry.correlationId,
        ...(entry.subscription === null ? {} : { 'ion.subscription': entry.subscription }),
        ...(entry.jobId === null ? {} : { 'ion.job.id': entry.jobId }),
      },
    });
    const trace = {
      traceparent: this.tracing.traceparentOf(span),
      tracestate: this.tracing.tracestateOf(span),
    };
    try {
      await this.publishOne(entry, noticeMessage(entry, entry.jobId, trace));
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: String(err) });
      throw err;
    } finally {
      span.end();
    }
  }

  async stop(): Promise<void> {
    await this.loop.stop();
  }
}
