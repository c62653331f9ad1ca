import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Control, ControlObserver } from '../app/control.js';
import type { EventBus, QueueDepth } from '../bus/event-bus.js';
import { errorMessage } from '../core/errors.js';

/** Upper bounds of the job duration histogram, in seconds: 10 ms to 1 hour. */
const DURATION_BUCKETS_SECONDS = [0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600];

/**
 * A scrape reads the queue depths for at most this long; subscriptions not answered by then
 * are left out of that scrape (Prometheus' own scrape timeout defaults to 10 s).
 */
const QUEUE_DEPTH_TIMEOUT_MS = 3000;
/** Subscriptions whose depth is read at the same time (a RabbitMQ read opens a channel per queue). */
const QUEUE_DEPTH_CONCURRENCY = 4;

/** Where the queue depth gauge reads from, at scrape time. */
export interface QueueDepthSource {
  bus: Pick<EventBus, 'depth'>;
  /** The subscriptions to report: one per live module, named after it. */
  subscriptions(): Promise<string[]>;
  logger: { warn(obj: object, msg?: string): void };
  /** Default {@link QUEUE_DEPTH_TIMEOUT_MS}. */
  timeoutMs?: number;
}

/**
 * Ion's Prometheus metrics, in a registry of their own (not prom-client's global one), so
 * every Ion app — and every test that builds one — counts separately. They count what this
 * process observes: events published through its control layer (API, gateway), attempts
 * run by its workers. The exception is `ion_queue_depth`, read from the bus when scraped.
 */
export class IonMetrics {
  readonly registry = new Registry();
  readonly eventsPublished = new Counter({
    name: 'ion_events_published_total',
    help: 'Root events published through this API process (gateway, CloudEvents, /v1/events), by event type.',
    labelNames: ['type'] as const,
    registers: [this.registry],
  });
  readonly jobs = new Counter({
    name: 'ion_jobs_total',
    help: 'Job attempts finished by the workers of this process, by module and outcome (succeeded, failed, dead_lettered, released, cancelled).',
    labelNames: ['module', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly jobDuration = new Histogram({
    name: 'ion_job_duration_seconds',
    help: 'How long module runs took, by module (attempts whose module never started are not observed).',
    labelNames: ['module'] as const,
    buckets: DURATION_BUCKETS_SECONDS,
    registers: [this.registry],
  });
  readonly deadLetters = new Counter({
    name: 'ion_dead_letters_total',
    help: 'Jobs dead-lettered by the workers of this process after their retries ran out, by module.',
    labelNames: ['module'] as const,
    registers: [this.registry],
  });

  /**
   * Read from the bus at every scrape (see {@link watchQueues}); without a source it has no
   * samples. A subscription whose read fails is left out of that scrape (and logged): a
   * broker outage must not turn the whole scrape into an error.
   */
  readonly queueDepth = new Gauge({
    name: 'ion_queue_depth',
    help: 'Messages in each module subscription on the event bus at scrape time, by state: ready (waiting for delivery, delayed retries included) or in_flight (delivered, not yet settled).',
    labelNames: ['subscription', 'state'] as const,
    registers: [this.registry],
    collect: () => this.collectQueueDepth(),
  });
  private queues: QueueDepthSource | undefined;

  /** Feeds the metrics; pass it to `Control.observe`. */
  readonly observer: ControlObserver = {
    eventPublished: (event) => {
      this.eventsPublished.inc({ type: event.type });
    },
    attemptFinished: ({ module, outcome, durationMs }) => {
      this.jobs.inc({ module, outcome });
      if (durationMs !== null) this.jobDuration.observe({ module }, durationMs / 1000);
      if (outcome === 'dead_lettered') this.deadLetters.inc({ module });
    },
  };

  /** Makes `ion_queue_depth` report the subscriptions of `source` from now on. */
  watchQueues(source: QueueDepthSource): void {
    this.queues = source;
  }

  private async collectQueueDepth(): Promise<void> {
    const source = this.queues;
    if (source === undefined) return;
    const depths = await readDepths(source);
    // Replaced in one synchronous step, after every read: a deleted module's series goes,
    // and a concurrent scrape never sees a half-filled gauge.
    this.queueDepth.reset();
    for (const [subscription, depth] of depths) {
      this.queueDepth.set({ subscription, state: 'ready' }, depth.ready);
      this.queueDepth.set({ subscription, state: 'in_flight' }, depth.inFlight);
    }
  }

  /** The Prometheus text exposition of every metric. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/**
 * The depth of every subscription of `source` that answers in time, a few at once. Never
 * rejects: failures are logged in one warning per scrape and leave those subscriptions out.
 */
async function readDepths(source: QueueDepthSource): Promise<Map<string, QueueDepth>> {
  const found = new Map<string, QueueDepth>();
  const deadline = Date.now() + (source.timeoutMs ?? QUEUE_DEPTH_TIMEOUT_MS);
  let pending: string[];
  try {
    pending = await beforeDeadline(source.subscriptions(), deadline);
  } catch (err) {
    source.logger.warn(
      { err: errorMessage(err) },
      'ion_queue_depth left out of this scrape: listing the modules failed',
    );
    return found;
  }
  const failed: { subscription: string; error: string }[] = [];
  const worker = async (): Promise<void> => {
    for (let name = pending.shift(); name !== undefined; name = pending.shift()) {
      try {
        if (Date.now() >= deadline) throw new Error('no time left in this scrape');
        found.set(name, await beforeDeadline(source.bus.depth(name), deadline));
      } catch (err) {
        failed.push({ subscription: name, error: errorMessage(err) });
      }
    }
  };
  await Promise.all(Array.from({ length: QUEUE_DEPTH_CONCURRENCY }, worker));
  if (failed.length > 0) {
    source.logger.warn(
      { failed },
      `ion_queue_depth left out ${failed.length} subscription(s) of this scrape`,
    );
  }
  return found;
}

/** `promise`, or a rejection once `deadline` (epoch ms) passed; a late failure is ignored. */
async function beforeDeadline<T>(promise: Promise<T>, deadline: number): Promise<T> {
  promise.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () => reject(new Error('no answer before the scrape deadline')),
      Math.max(0, deadline - Date.now()),
    );
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

const byControl = new WeakMap<Control, IonMetrics>();

/**
 * The metrics of one control layer (one Ion app), created and attached on first use. The
 * composition root calls it at start-up so counting starts then, passing the bus so that
 * `ion_queue_depth` reports every live module's subscription; the server only calls it
 * when scraped, so building a server never touches the control layer.
 */
export function metricsOf(
  control: Control,
  queues?: Pick<QueueDepthSource, 'bus' | 'logger'>,
): IonMetrics {
  let metrics = byControl.get(control);
  if (metrics === undefined) {
    metrics = new IonMetrics();
    control.observe(metrics.observer);
    byControl.set(control, metrics);
  }
  if (queues !== undefined) {
    metrics.watchQueues({
      ...queues,
      subscriptions: async () => (await control.listModules()).map((module) => module.name),
    });
  }
  return metrics;
}
