import type { Logger } from 'pino';
import type { EventBus } from '../bus/event-bus.js';
import { NotFoundError } from '../core/errors.js';
import { noticeMessage } from '../bus/message-format.js';
import type { DocumentStore } from '../store/document-store.js';
import { BatchLoop } from './batch-loop.js';

export interface OutboxRelayOptions {
  pollIntervalMs?: number;
  batchSize?: number;
}

/**
 * Publishes committed events from the store's outbox to the bus, then marks them published.
 * At-least-once: a crash between publish and mark publishes again, and consumers dedupe by
 * event id (the commit protocol's step 1). Several relays may run at once.
 */
export class OutboxRelay {
  private readonly batchSize: number;
  private readonly loop: BatchLoop;

  constructor(
    private readonly store: DocumentStore,
    private readonly bus: EventBus,
    private readonly logger: Logger,
    options: OutboxRelayOptions = {},
  ) {
    this.batchSize = options.batchSize ?? 200;
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
      const message = noticeMessage(entry, entry.jobId);
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
      done.push(entry.id);
    }
    await this.store.markPublished(done);
    return entries.length;
  }

  async stop(): Promise<void> {
    await this.loop.stop();
  }
}
