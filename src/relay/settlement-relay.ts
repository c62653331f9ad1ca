import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { BlobStore } from '../blob/blob-store.js';
import {
  TRACE_SETTLED,
  settledEvent,
  traceSummary,
  type Settlement,
} from '../core/trace-settled.js';
import type { DocumentStore } from '../store/document-store.js';
import { BatchLoop } from './batch-loop.js';

export interface SettlementRelayOptions {
  pollIntervalMs?: number;
  batchSize?: number;
  /** Called after it stored a settled event (and its outbox row): wake the outbox relay. */
  onRaised?: () => void;
}

/**
 * Raises `ion.trace.settled` for every settled trace: takes open settlements from the store,
 * stores the trace's summary as the blob `trace.json`, then (one store transaction) inserts
 * the event, whose id derives from the correlation id, with its outbox row if absent, and
 * marks the settlement raised. A crash between the steps repeats them on the next pass, and
 * two processes raising one settlement store one event: the blob is content-addressed, the
 * event insert-if-absent. It runs beside the outbox relay, which publishes the event.
 *
 * When no module subscribes to `ion.trace.settled` (paused ones count), the settlement is
 * closed without an event or a blob: the bus would drop an event no subscription is bound
 * to, so it would only add an event to every trace and a copy of the trace to the blobs.
 */
export class SettlementRelay {
  private readonly batchSize: number;
  private readonly loop: BatchLoop;

  constructor(
    private readonly store: DocumentStore,
    private readonly blobs: BlobStore,
    private readonly logger: Logger,
    private readonly options: SettlementRelayOptions = {},
  ) {
    this.batchSize = options.batchSize ?? 50;
    this.loop = new BatchLoop({
      pass: () => this.raiseBatch(),
      batchSize: this.batchSize,
      pollIntervalMs: options.pollIntervalMs ?? 250,
      logger,
      failureMessage: 'settlement relay could not raise ion.trace.settled; backing off',
    });
  }

  start(): void {
    this.loop.start();
  }

  /** Look for settlements now rather than at the next poll (after a job ended here). */
  wake(): void {
    this.loop.wake();
  }

  /** One pass over open settlements: returns how many it handled. */
  async raiseBatch(): Promise<number> {
    const open = await this.store.openSettlements(this.batchSize);
    if (open.length === 0) return 0;
    const modules = await this.store.listModules();
    const subscribed = modules.some((m) => m.subscribes.includes(TRACE_SETTLED));
    for (const settlement of open) {
      if (subscribed) await this.raise(settlement);
      else await this.store.closeSettlement(settlement.correlationId);
    }
    if (subscribed) this.options.onRaised?.();
    return open.length;
  }

  private async raise(settlement: Settlement): Promise<void> {
    const trace = await this.store.trace(settlement.correlationId);
    const root = trace.events.find((e) => e.eventId === settlement.rootEventId) ?? null;
    const summary = `${JSON.stringify(traceSummary(settlement, trace), null, 2)}\n`;
    const file = await this.blobs.put(Readable.from([Buffer.from(summary, 'utf8')]));
    const event = settledEvent(settlement, root, file);
    const { created } = await this.store.recordSettledEvent(event);
    this.logger.info(
      { correlationId: settlement.correlationId, eventId: event.eventId, created },
      created ? 'trace settled: ion.trace.settled raised' : 'trace settled: raised elsewhere',
    );
  }

  async stop(): Promise<void> {
    await this.loop.stop();
  }
}
