import { randomUUID } from 'node:crypto';
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
  /**
   * How long this relay holds the settlements it takes (default 60 s): other processes'
   * relays leave them alone meanwhile, and take them over after it if this one died.
   */
  claimMs?: number;
  /** Called after it stored a settled event (and its outbox row): wake the outbox relay. */
  onRaised?: () => void;
}

/**
 * Raises `ion.trace.settled` for every settled trace: claims open settlements in the store,
 * stores the trace's summary as the blob `trace.json`, then (one store transaction) inserts
 * the event, whose id derives from the correlation id, with its outbox row if absent, and
 * marks the settlement raised. It runs beside the outbox relay, which publishes the event.
 *
 * Every process runs one, and each claims the settlements it raises (`claimSettlements`),
 * so a trace is read and stored once, not once per process. Nor does a second copy of
 * `trace.json` land while the summary module reads the first: an object store whose copy
 * is not atomic (s3rver writes the file in place) showed the blob missing for a moment. A
 * crash between the steps repeats them once the claim ends, and two processes raising one
 * settlement all the same (a claim that ended mid-raise) still store one event: the blob
 * is content-addressed, the event insert-if-absent.
 *
 * When no module subscribes to `ion.trace.settled` (paused ones count), the settlement is
 * closed without an event or a blob: the bus would drop an event no subscription is bound
 * to, so it would only add an event to every trace and a copy of the trace to the blobs.
 */
export class SettlementRelay {
  private readonly batchSize: number;
  private readonly claimMs: number;
  /** This relay's name on its claims. */
  private readonly owner = randomUUID();
  private readonly loop: BatchLoop;

  constructor(
    private readonly store: DocumentStore,
    private readonly blobs: BlobStore,
    private readonly logger: Logger,
    private readonly options: SettlementRelayOptions = {},
  ) {
    this.batchSize = options.batchSize ?? 50;
    this.claimMs = options.claimMs ?? 60_000;
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

  /** One pass over the open settlements it could claim: returns how many it handled. */
  async raiseBatch(): Promise<number> {
    const now = Date.now();
    const open = await this.store.claimSettlements({
      owner: this.owner,
      limit: this.batchSize,
      now: new Date(now).toISOString(),
      until: new Date(now + this.claimMs).toISOString(),
    });
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
