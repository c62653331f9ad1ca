/**
 * The event bus port. Topics are event types; a subscription is durable and belongs to one
 * module; messages published to a topic are copied to every subscription bound to it at
 * publish time; consumers of one subscription compete (each delivery goes to one of them).
 * Delivery is at-least-once: a delivery that is neither acked nor extended before its lease
 * lapses is delivered again. Vocabulary follows JetStream: ack / nack / extend / deadLetter.
 */

/** One message on the bus. `id` is the event id; a subscription holds one copy per id. */
export interface BusMessage {
  id: string;
  /** The event type. */
  topic: string;
  /** Opaque text (JSON in practice). Consumers must cope with malformed bodies. */
  body: string;
}

export interface SubscriptionSpec {
  /** Unique, durable name (the module name). */
  name: string;
  /** Topics (event types) this subscription receives. Replaces earlier bindings. */
  topics: string[];
  /** How long a delivery stays invisible to other consumers unless extended. */
  leaseMs: number;
}

export interface Delivery {
  readonly message: BusMessage;
  readonly subscription: string;
  /** 1 on first delivery, incremented on every redelivery (nack or lapsed lease). */
  readonly deliveryCount: number;
  /** Done: remove the message from the subscription. */
  ack(): Promise<void>;
  /** Not done: deliver again after `delayMs` (default 0). */
  nack(options?: { delayMs?: number }): Promise<void>;
  /** Still working: push the lease out by another `leaseMs`. */
  extend(): Promise<void>;
  /** Give up: park the message with a reason; it is not delivered again unless re-sent. */
  deadLetter(reason: string): Promise<void>;
}

/**
 * How many messages one subscription holds, as the broker counts them at the moment asked.
 * A delivery nacked with a delay counts as `ready` (it waits to be delivered again) on the
 * SQLite and RabbitMQ buses; see each adapter's `depth` for what it can and cannot see.
 */
export interface QueueDepth {
  /** Waiting to be delivered, including messages delayed by `nack({ delayMs })`. */
  ready: number;
  /** Delivered to a consumer and not yet settled (acked, nacked or dead-lettered). */
  inFlight: number;
}

export interface ConsumeOptions {
  /** Ends the iteration (the iterator returns) when aborted. */
  signal: AbortSignal;
}

/**
 * What an adapter can and cannot do beyond the port's common contract, declared on the
 * adapter so the conformance suite and the composition root read it instead of knowing it.
 */
export interface BusCapabilities {
  /**
   * Whether a subscription holds one copy per message id: a publish or `sendTo` of an id it
   * holds (ready, in flight or recently acked) adds no second copy. False on a broker without
   * per-id state (RabbitMQ): duplicates reach consumers, and the store's job dedupe (the
   * commit protocol's first step) drops them.
   */
  dedupesById: boolean;
  /**
   * Whether processes on other hosts can share this bus (a broker), or only processes on
   * the host that holds its file.
   */
  sharedAcrossHosts: boolean;
}

export interface EventBus {
  /** What this adapter can do beyond the common contract. */
  readonly capabilities: BusCapabilities;
  start(): Promise<void>;
  /** Idempotent. Ends every open consume iteration. */
  close(): Promise<void>;
  /** Creates or updates a durable subscription. Idempotent. */
  ensureSubscription(spec: SubscriptionSpec): Promise<void>;
  /** Removes a subscription and the messages it holds. Idempotent. */
  deleteSubscription(name: string): Promise<void>;
  /** Copies the message to every subscription bound to its topic. */
  publish(message: BusMessage): Promise<void>;
  /**
   * Sends a message to one subscription only, whatever its topic (redrive, replay). If the
   * subscription already holds a copy with the same id that is not in flight, it is made
   * ready again.
   */
  sendTo(subscription: string, message: BusMessage): Promise<void>;
  /**
   * Pull-based consumption: each `next()` resolves with the next available delivery, waiting
   * as long as needed. Callers control concurrency by how many deliveries they hold.
   */
  consume(subscription: string, options: ConsumeOptions): AsyncIterable<Delivery>;
  /**
   * The subscription's queue depth (for monitoring: a snapshot, never used to decide
   * delivery). Read-only. Rejects with NotFoundError when the subscription does not exist,
   * so a monitor can tell "empty" from "missing". Dead-lettered and acked messages are not
   * counted.
   */
  depth(subscription: string): Promise<QueueDepth>;
}
