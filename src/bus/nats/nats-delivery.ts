import type { Msg, NatsConnection } from 'nats';
import { wrapDriverError } from '../../core/errors.js';
import type { BusMessage, Delivery } from '../event-bus.js';

/**
 * What the NATS adapter's files share about one delivery: the lease bookkeeping, the ack
 * subject's parsing and the settles. Internal to the NATS adapter.
 */

export const ADAPTER = 'nats-bus';
/** Settles are confirmed by the server (it answers every ack kind sent with a reply subject). */
export const REQUEST_TIMEOUT_MS = 5_000;

/** What a subscription is, as stored in the description of its direct consumer. */
export interface SubscriptionMeta {
  topics: string[];
  leaseMs: number;
}

/**
 * The latest delivery of a (subscription, message id) handed out by this bus instance. A
 * delivery whose entry was replaced (the message was redelivered here) is stale; sendTo
 * leaves a message alone while its entry's lease runs.
 */
export interface LiveEntry {
  leaseEndsAt: number;
}

export const liveKey = (subscription: string, id: string): string => `${subscription}\0${id}`;

/** The lease as this process sees it ends a little before the server's, never after. */
export const leaseMargin = (leaseMs: number): number => Math.min(leaseMs / 10, 1_000);

/** What a delivery needs of its puller. */
export interface DeliveryContext {
  nc: NatsConnection;
  live: Map<string, LiveEntry>;
  logger: { warn(obj: object, msg?: string): void } | undefined;
}

/** A fetched message not yet settled: buffered, or handed out as a delivery. */
export interface Held {
  msg: Msg;
  message: BusMessage;
  deliveryCount: number;
  entry: LiveEntry;
  heldSince: number;
  keepalive?: NodeJS.Timeout;
}

/**
 * Consumer and delivery count from an ack subject:
 * `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>...` (9 tokens) or the 12-token v2 form.
 */
export function parseAckSubject(
  reply: string,
): { consumer: string; deliveryCount: number } | undefined {
  const t = reply.split('.');
  if (t[0] !== '$JS' || t[1] !== 'ACK') return undefined;
  const [consumer, count] = t.length === 9 ? [t[3], Number(t[4])] : [t[5], Number(t[6])];
  if (!consumer || !Number.isSafeInteger(count) || count < 1) return undefined;
  return { consumer, deliveryCount: count };
}

export function header(msg: Msg, name: string): string | undefined {
  const value = msg.headers?.get(name);
  if (!value) return undefined;
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/**
 * The delivery handed to a consumer for a held message: its settles map to JetStream acks, each
 * confirmed by the server, and fenced by the lease as described below.
 */
export function createDelivery(
  ctx: DeliveryContext,
  subscription: string,
  held: Held,
  leaseMs: number,
): Delivery {
  const { nc, live, logger } = ctx;
  const key = liveKey(subscription, held.message.id);
  let settled = false;
  const forget = (): void => {
    if (live.get(key) === held.entry) live.delete(key);
  };
  /**
   * `fenced`: skipped once the lease lapsed by this process's clock, as the message may
   * be redelivered elsewhere and NATS would apply a nak or term to the new owner's
   * delivery. An ack is honoured then (the work is done): fewer duplicates.
   */
  const settle = async (action: string, payload: string, final: boolean, fenced: boolean) => {
    if (settled) return;
    const superseded = live.get(key) !== held.entry;
    if (superseded || (fenced && Date.now() > held.entry.leaseEndsAt)) {
      settled = true;
      forget();
      logger?.warn(
        { subscription, messageId: held.message.id, action },
        `${ADAPTER}: ${action} ignored: this delivery no longer owns the lease`,
      );
      return;
    }
    if (final) settled = true; // before the await: a concurrent second settle is a no-op
    try {
      await nc.request(held.msg.reply ?? '', payload, { timeout: REQUEST_TIMEOUT_MS });
    } catch (err) {
      if (final) settled = false; // may be retried
      throw wrapDriverError(ADAPTER, action, err);
    }
    if (final) forget();
    else held.entry.leaseEndsAt = Date.now() + leaseMs - leaseMargin(leaseMs);
  };
  return {
    message: held.message,
    subscription,
    deliveryCount: held.deliveryCount,
    ack: () => settle('ack', '+ACK', true, false),
    nack: (options) => {
      const delayMs = Math.max(0, Math.round(options?.delayMs ?? 0));
      const payload =
        delayMs > 0 ? `-NAK ${JSON.stringify({ delay: delayMs * 1_000_000 })}` : '-NAK';
      return settle('nack', payload, true, true);
    },
    extend: () => settle('extend', '+WPI', false, true),
    // NATS 2.9 keeps no reason with +TERM; dead letters and their reasons live in the store.
    deadLetter: () => settle('deadLetter', '+TERM', true, true),
  };
}
