import type { ConfirmChannel, ConsumeMessage, GetMessage } from 'amqplib';
import { setTimeout as sleep } from 'node:timers/promises';
import { NotFoundError, UnavailableError } from '../../core/errors.js';
import type {
  BusCapabilities,
  BusMessage,
  ConsumeOptions,
  Delivery,
  EventBus,
  QueueDepth,
  SubscriptionSpec,
} from '../event-bus.js';
import { ADAPTER, AmqpSession, type BusLogger } from './amqp-session.js';
import { checkSubscriptionSpec } from '../checks.js';
import { RabbitMqConsumer, type ConsumerHost } from './rabbitmq-consumer.js';
import {
  COUNT_HEADER,
  DEAD_AT_HEADER,
  DLQ_OPTIONS,
  META_OPTIONS,
  REASON_HEADER,
  allDelayQueues,
  checked,
  decodeMessage,
  delayBucketMs,
  delayQueueName,
  delayQueueOptions,
  encodeBody,
  mainQueueOptions,
  parseMeta,
  publishOptions,
  queuesOf,
  type SubscriptionMeta,
} from './rabbitmq-topology.js';

/** Options of {@link RabbitMqEventBus}. */
export interface RabbitMqEventBusOptions {
  /** AMQP URL, e.g. `amqp://user:pass@host:5672/vhost`. */
  url: string;
  /** Durable topic exchange that `publish` sends to (declared on start). */
  exchange: string;
  /** Prepended to every queue name (namespaces several Ion installs on one vhost). Default ''. */
  queuePrefix?: string;
  logger?: BusLogger;
}

/** A cached lease is re-read from the broker after this long (another instance may change it). */
const LEASE_CACHE_MS = 10_000;
/** How long a reader waits for the meta message that another reader holds for a moment. */
const META_READ_ATTEMPTS = 10;
const META_READ_PAUSE_MS = 10;

/**
 * The event bus on RabbitMQ (3.10+, no plugin needed).
 *
 * Topology, per subscription `name` (queue `q = queuePrefix + name`):
 * - `publish` sends to the durable topic exchange `options.exchange` with the event type as
 *   routing key; `q`, a durable **quorum** queue, is bound to the exchange once per topic.
 *   Topics are bound verbatim, so a topic containing `*` or `#` acts as a wildcard.
 * - `q.meta` holds one persistent JSON message `{ leaseMs, topics }` (max-length 1). Queue
 *   arguments cannot change after declaration and AMQP cannot list bindings, so this is
 *   where `ensureSubscription` finds which bindings to remove and where every instance
 *   (another worker process) reads the lease. Readers take it with basic.get and put it
 *   back at once; each instance caches the lease for {@link LEASE_CACHE_MS}.
 * - `q.dlq`: `deadLetter(reason)` publishes a copy there (reason, time and delivery count
 *   in `x-ion-*` headers, confirmed) and then acks the original.
 * - `q.delay.<2^k>`: `nack({ delayMs })` publishes a copy with `expiration = delayMs` to the
 *   delay queue of its power-of-two bucket, which dead-letters expired messages back to `q`
 *   through the default exchange; then it acks the original. See {@link delayBucketMs} for
 *   the head-of-line caveat of per-message TTL.
 *
 * Delivery counts are 1-based: a copy republished by a delayed nack carries the count so
 * far in `x-ion-delivery-count`; returns to the queue (plain nack, lapsed lease, crashed
 * consumer) are counted by the quorum queue in `x-delivery-count`.
 *
 * There is no per-id state: republishing an id makes a second copy (the store's job dedupe
 * absorbs it), and `sendTo` always adds a copy (count 1), even if one is in flight.
 *
 * Consumption, leases and settling: see {@link RabbitMqConsumer}. Every publish waits for
 * the broker's confirm. A dropped connection is logged and re-opened on the next use;
 * operations in between reject with UnavailableError, and consumers retry with backoff.
 */
export class RabbitMqEventBus implements EventBus {
  /** No per-id state: a republished id is a second copy (see the class comment). */
  readonly capabilities: BusCapabilities = Object.freeze({
    dedupesById: false,
    sharedAcrossHosts: true,
  });
  private readonly session: AmqpSession;
  private readonly exchange: string;
  private readonly prefix: string;
  private readonly logger: BusLogger | undefined;
  private readonly consumers = new Set<RabbitMqConsumer>();
  private readonly leases = new Map<string, { leaseMs: number; readAt: number }>();
  /** Deliveries held (not yet settled nor lapsed) by this instance's consumers, per subscription. */
  private readonly held = new Map<string, number>();
  private readonly host: ConsumerHost;

  constructor(options: RabbitMqEventBusOptions) {
    this.session = new AmqpSession(options.url, options.logger);
    this.exchange = options.exchange;
    this.prefix = options.queuePrefix ?? '';
    this.logger = options.logger;
    this.host = {
      logger: this.logger,
      isClosed: () => this.session.isClosed,
      queueOf: (name) => queuesOf(this.prefix, name).main,
      leaseMs: (name) => this.leaseMs(name),
      channel: () => this.session.channel(),
      delay: (name, msg, count, delayMs) => this.delay(name, msg, count, delayMs),
      deadLetter: (name, msg, count, reason) => this.park(name, msg, count, reason),
      forget: (consumer) => this.consumers.delete(consumer),
      countHeld: (name, delta) => {
        const count = (this.held.get(name) ?? 0) + delta;
        if (count > 0) this.held.set(name, count);
        else this.held.delete(name);
      },
    };
  }

  /** Connects and declares the exchange. Fails (UnavailableError) if the broker is unreachable. */
  async start(): Promise<void> {
    if (this.session.isClosed) throw new UnavailableError(`${ADAPTER}: closed`);
    await this.session.withChannel('start', (ch) =>
      ch.assertExchange(this.exchange, 'topic', { durable: true }),
    );
  }

  /** Idempotent. Ends every open iteration; unacked deliveries return to their queues. */
  async close(): Promise<void> {
    if (this.session.isClosed) return;
    const closing = this.session.close();
    for (const consumer of [...this.consumers]) consumer.stop();
    await closing;
  }

  /**
   * Declares the queues, replaces the bindings and records `{ leaseMs, topics }`. Two
   * instances updating one subscription at the same moment may leave the union of their
   * topics bound; the next call repairs it.
   */
  async ensureSubscription(spec: SubscriptionSpec): Promise<void> {
    checkSubscriptionSpec(spec);
    const queues = queuesOf(this.prefix, spec.name);
    const meta: SubscriptionMeta = {
      leaseMs: Math.round(spec.leaseMs),
      topics: [...new Set(spec.topics)],
    };
    const existed = await this.session.queueExists(queues.meta);
    await this.session.withChannel(
      'ensureSubscription',
      async (ch) => {
        await ch.assertExchange(this.exchange, 'topic', { durable: true });
        await ch.assertQueue(queues.main, mainQueueOptions(queues));
        await ch.assertQueue(queues.dlq, DLQ_OPTIONS);
        await ch.assertQueue(queues.meta, META_OPTIONS);
        const previous = existed ? await takeMeta(ch, queues.meta) : undefined;
        const old = previous ? (parseMeta(previous.content)?.topics ?? []) : [];
        for (const topic of meta.topics) await ch.bindQueue(queues.main, this.exchange, topic);
        for (const topic of old) {
          if (!meta.topics.includes(topic)) await ch.unbindQueue(queues.main, this.exchange, topic);
        }
        ch.sendToQueue(queues.meta, Buffer.from(JSON.stringify(meta)), { persistent: true });
        await ch.waitForConfirms();
        if (previous) ch.ack(previous);
      },
      true,
    );
    this.leases.set(spec.name, { leaseMs: meta.leaseMs, readAt: Date.now() });
  }

  /** Deletes the queue with its messages, its DLQ, delay queues and meta. Idempotent. */
  async deleteSubscription(name: string): Promise<void> {
    const queues = queuesOf(this.prefix, name);
    this.leases.delete(name);
    await this.session.withChannel('deleteSubscription', async (ch) => {
      for (const queue of [queues.main, ...allDelayQueues(queues.main), queues.dlq, queues.meta]) {
        await ch.deleteQueue(queue);
      }
    });
  }

  async publish(message: BusMessage): Promise<void> {
    const m = checked(message);
    await this.session.publish('publish', this.exchange, m.topic, encodeBody(m), publishOptions(m));
  }

  /** Adds a copy (deliveryCount 1) to one subscription's queue through the default exchange. */
  async sendTo(subscription: string, message: BusMessage): Promise<void> {
    const m = checked(message);
    const queue = queuesOf(this.prefix, subscription).main;
    if (!(await this.session.queueExists(queue))) {
      throw new NotFoundError(`subscription "${subscription}" does not exist`);
    }
    await this.session.publish('sendTo', '', queue, encodeBody(m), publishOptions(m));
  }

  /**
   * `ready` = the ready messages of the main queue plus those waiting in its delay queues
   * (delayed nacks; each bucket that exists is checked, one throwaway channel each, in
   * parallel). `inFlight` = the deliveries **this instance** holds: AMQP 0-9-1 tells
   * nobody how many messages other connections hold unacked (only the management plugin
   * does), so deliveries held by other processes are in neither count. A lapsed lease is
   * back in the queue, hence ready. Rejects with NotFoundError when the subscription does
   * not exist.
   */
  async depth(subscription: string): Promise<QueueDepth> {
    const { main } = queuesOf(this.prefix, subscription);
    const [ready, ...delayed] = await Promise.all(
      [main, ...allDelayQueues(main)].map((queue) => this.session.readyCount(queue)),
    );
    if (ready === undefined)
      throw new NotFoundError(`subscription "${subscription}" does not exist`);
    return {
      ready: delayed.reduce<number>((sum, n) => sum + (n ?? 0), ready),
      inFlight: this.held.get(subscription) ?? 0,
    };
  }

  /**
   * Pull-based consumption (see {@link RabbitMqConsumer}). `next()` rejects with
   * NotFoundError when the subscription does not exist; broker trouble is logged and
   * retried with backoff instead of ending the iteration.
   */
  consume(subscription: string, options: ConsumeOptions): AsyncIterable<Delivery> {
    const consumer = new RabbitMqConsumer(this.host, subscription, options.signal);
    if (this.session.isClosed) consumer.stop();
    else this.consumers.add(consumer);
    return { [Symbol.asyncIterator]: () => consumer };
  }

  /** The lease of a subscription: cached per instance, else read from its meta queue. */
  private async leaseMs(name: string): Promise<number> {
    const cached = this.leases.get(name);
    if (cached && Date.now() - cached.readAt < LEASE_CACHE_MS) return cached.leaseMs;
    const meta = await this.readMeta(name);
    if (meta) {
      this.leases.set(name, { leaseMs: meta.leaseMs, readAt: Date.now() });
      return meta.leaseMs;
    }
    if (cached) return cached.leaseMs;
    throw new UnavailableError(`${ADAPTER}: subscription "${name}" has no readable lease`);
  }

  private async readMeta(name: string): Promise<SubscriptionMeta | undefined> {
    const queues = queuesOf(this.prefix, name);
    try {
      return await this.session.withChannel('readMeta', async (ch) => {
        const msg = await takeMeta(ch, queues.meta);
        if (!msg) return undefined;
        ch.nack(msg, false, true); // put it back at the head
        return parseMeta(msg.content);
      });
    } catch (err) {
      if ((err as { cause?: { code?: unknown } }).cause?.code === 404) {
        throw new NotFoundError(`subscription "${name}" does not exist`, { cause: err });
      }
      throw err;
    }
  }

  private async delay(
    name: string,
    msg: ConsumeMessage,
    deliveryCount: number,
    delayMs: number,
  ): Promise<void> {
    const main = queuesOf(this.prefix, name).main;
    const bucketMs = delayBucketMs(delayMs);
    const queue = delayQueueName(main, bucketMs);
    // Declared on every use: idempotent, and it keeps the queue's x-expires from firing.
    await this.session.assertQueue(queue, delayQueueOptions(main, bucketMs));
    await this.session.publish('nack', '', queue, msg.content, {
      ...publishOptions(decodeMessage(msg), { [COUNT_HEADER]: deliveryCount }),
      expiration: String(delayMs),
    });
  }

  private async park(
    name: string,
    msg: ConsumeMessage,
    deliveryCount: number,
    reason: string,
  ): Promise<void> {
    const headers = {
      [COUNT_HEADER]: deliveryCount,
      [REASON_HEADER]: String(reason),
      [DEAD_AT_HEADER]: Date.now(),
    };
    const dlq = queuesOf(this.prefix, name).dlq;
    await this.session.publish('deadLetter', '', dlq, msg.content, {
      ...publishOptions(decodeMessage(msg), headers),
    });
  }
}

/**
 * Takes the meta message (unacked, so it returns to the queue if we die). Another reader
 * may hold it for a moment, so an empty queue is retried briefly.
 */
async function takeMeta(ch: ConfirmChannel, queue: string): Promise<GetMessage | undefined> {
  for (let attempt = 0; attempt < META_READ_ATTEMPTS; attempt++) {
    const msg = await ch.get(queue, { noAck: false });
    if (msg) return msg;
    await sleep(META_READ_PAUSE_MS);
  }
  return undefined;
}
