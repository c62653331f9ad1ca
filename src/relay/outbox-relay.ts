import type { Logger } from 'pino';
import type { EventBus } from '../bus/event-bus.js';
import { NotFoundError, errorMessage } from '../core/errors.js';
import { sleep, yieldToEventLoop } from '../core/time.js';
import { Waker } from '../core/waker.js';
import { noticeMessage } from '../dispatcher/bus-notice.js';
import type { DocumentStore } from '../store/document-store.js';

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
  private readonly stopSignal = new AbortController();
  private readonly waker = new Waker();
  private loop: Promise<void> | null = null;
  private readonly pollIntervalMs: number;
  private readonly batchSize: number;

  constructor(
    private readonly store: DocumentStore,
    private readonly bus: EventBus,
    private readonly logger: Logger,
    options: OutboxRelayOptions = {},
  ) {
    this.pollIntervalMs = options.pollIntervalMs ?? 250;
    this.batchSize = options.batchSize ?? 200;
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Publish now rather than at the next poll (called after a commit in this process). */
  wake(): void {
    this.waker.wake();
  }

  private async run(): Promise<void> {
    const signal = this.stopSignal.signal;
    let failures = 0;
    while (!signal.aborted) {
      let published = 0;
      try {
        published = await this.publishBatch();
        failures = 0;
      } catch (err) {
        failures += 1;
        this.logger.warn({ err: errorMessage(err) }, 'outbox relay could not publish; backing off');
        await sleep(Math.min(5000, 100 * 2 ** failures), signal);
        continue;
      }
      if (published < this.batchSize) await this.waker.wait(this.pollIntervalMs, signal);
      else await yieldToEventLoop(); // a long drain must not hold the event loop
    }
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
    this.stopSignal.abort();
    this.wake();
    await this.loop;
  }
}
