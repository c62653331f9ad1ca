import type { Message, Options } from 'amqplib';
import type { BusMessage } from '../event-bus.js';
import { checkedMessage } from '../checks.js';

/** Header carrying how many deliveries a republished message already had. */
export const COUNT_HEADER = 'x-ion-delivery-count';
/** Header carrying the reason of a dead-lettered message. */
export const REASON_HEADER = 'x-ion-dead-reason';
/** Header carrying when a message was dead-lettered (epoch ms). */
export const DEAD_AT_HEADER = 'x-ion-dead-at';

/**
 * Delays are bucketed by powers of two: a delay d in [2^k, 2^(k+1)) ms waits in queue
 * `<queue>.delay.<2^k>`. Per-message TTL only expires at the head of a queue, so within a
 * bucket a message can be held up by an older one with a longer delay, but by less than its
 * own delay (never more than twice the delay asked for); a 10-minute retry never holds up a
 * 1-second one. Delays above 2^MAX_DELAY_EXPONENT ms (about 24 days) go in the last bucket.
 */
const MAX_DELAY_EXPONENT = 31;

/** The queues of one subscription. */
export interface SubscriptionQueues {
  main: string;
  /** Dead letters, with the reason in a header. */
  dlq: string;
  /** One JSON message: the subscription's {@link SubscriptionMeta}. */
  meta: string;
}

/** The subscription's settings that RabbitMQ cannot tell us (bindings cannot be listed). */
export interface SubscriptionMeta {
  leaseMs: number;
  topics: string[];
}

export function queuesOf(prefix: string, name: string): SubscriptionQueues {
  const main = `${prefix}${name}`;
  return { main, dlq: `${main}.dlq`, meta: `${main}.meta` };
}

export function delayBucketMs(delayMs: number): number {
  const exponent = Math.min(MAX_DELAY_EXPONENT, Math.floor(Math.log2(Math.max(1, delayMs))));
  return 2 ** exponent;
}

/** Every delay queue a subscription may have (deleted with it). */
export function allDelayQueues(main: string): string[] {
  return Array.from({ length: MAX_DELAY_EXPONENT + 1 }, (_, k) => delayQueueName(main, 2 ** k));
}

export function delayQueueName(main: string, bucketMs: number): string {
  return `${main}.delay.${bucketMs}`;
}

/**
 * The main queue is a quorum queue: the broker counts returns (nack with requeue, a consumer
 * channel or connection that closed with the message unacked) in `x-delivery-count`, which
 * is what makes crash redelivery counts right. Broker-side dead-lettering (none is
 * configured today, but a `delivery-limit` policy would use it) goes to the DLQ.
 */
export function mainQueueOptions(queues: SubscriptionQueues): Options.AssertQueue {
  return {
    durable: true,
    arguments: {
      'x-queue-type': 'quorum',
      'x-dead-letter-exchange': '',
      'x-dead-letter-routing-key': queues.dlq,
    },
  };
}

export const DLQ_OPTIONS: Options.AssertQueue = { durable: true };

/** At most one ready message: publishing a new meta message drops the older one. */
export const META_OPTIONS: Options.AssertQueue = {
  durable: true,
  arguments: { 'x-max-length': 1, 'x-overflow': 'drop-head' },
};

/**
 * A delay queue: no consumer; a message expires after its own `expiration` and is
 * dead-lettered to the main queue through the default exchange. The queue deletes itself
 * once unused for longer than any delay it can hold (it is re-declared on every use).
 */
export function delayQueueOptions(main: string, bucketMs: number): Options.AssertQueue {
  return {
    durable: true,
    arguments: {
      'x-dead-letter-exchange': '',
      'x-dead-letter-routing-key': main,
      'x-expires': bucketMs * 2 + 60_000,
    },
  };
}

/** AMQP properties of a bus message: id and topic travel as message-id and type. */
export function publishOptions(
  message: BusMessage,
  headers: Record<string, unknown> = {},
): Options.Publish {
  return {
    persistent: true,
    messageId: message.id,
    type: message.topic,
    contentType: 'text/plain; charset=utf-8',
    headers,
  };
}

export function encodeBody(message: BusMessage): Buffer {
  return Buffer.from(message.body, 'utf8');
}

/** Rebuilds the bus message; a foreign message without id or type still yields one. */
export function decodeMessage(msg: Message): BusMessage {
  const { messageId, type } = msg.properties as { messageId?: unknown; type?: unknown };
  return {
    id: typeof messageId === 'string' ? messageId : '',
    topic: typeof type === 'string' ? type : msg.fields.routingKey,
    body: msg.content.toString('utf8'),
  };
}

/** 1-based: deliveries before a republish (our header) plus returns counted by the broker. */
export function deliveryCountOf(msg: Message): number {
  const headers = (msg.properties.headers ?? {}) as Record<string, unknown>;
  return toCount(headers[COUNT_HEADER]) + toCount(headers['x-delivery-count']) + 1;
}

function toCount(value: unknown): number {
  const n = typeof value === 'bigint' ? Number(value) : Number(value ?? 0);
  return Number.isFinite(n) && n > 0 ? Math.floor(n) : 0;
}

export function parseMeta(content: Buffer): SubscriptionMeta | undefined {
  try {
    const meta = JSON.parse(content.toString('utf8')) as Partial<SubscriptionMeta>;
    if (typeof meta.leaseMs !== 'number' || !Array.isArray(meta.topics)) return undefined;
    return { leaseMs: meta.leaseMs, topics: meta.topics.filter((t) => typeof t === 'string') };
  } catch {
    return undefined;
  }
}

/** Checks the shape (callers may bypass types); AMQP routing keys are at most 255 bytes. */
export function checked(message: BusMessage): BusMessage {
  return checkedMessage(message, 255);
}
