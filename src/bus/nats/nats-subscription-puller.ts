import type { Msg, NatsConnection, Subscription } from 'nats';
import { NotFoundError, wrapDriverError } from '../../core/errors.js';
import type { BusMessage, Delivery } from '../event-bus.js';
import {
  ADAPTER,
  type Held,
  type LiveEntry,
  type SubscriptionMeta,
  createDelivery,
  header,
  leaseMargin,
  liveKey,
  parseAckSubject,
} from './nats-delivery.js';
import type { NatsNames } from './nats-names.js';

/** A message fetched while nobody was waiting is kept (its lease renewed) at most this long. */
const MAX_HOLD_MS = 30_000;
const BACKOFF_MS = 250;

export interface PullerContext {
  nc: NatsConnection;
  names: NatsNames;
  logger: { warn(obj: object, msg?: string): void } | undefined;
  live: Map<string, LiveEntry>;
  /**
   * How long one pull waits on the server; also how long the subscription's metadata
   * (bindings, lease) is trusted while pulling, so changes made elsewhere are seen that fast.
   */
  pullExpiresMs: number;
  /** The subscription's metadata; undefined when it does not exist. */
  loadMeta(subscription: string): Promise<SubscriptionMeta | undefined>;
}

interface Waiter {
  resolve(delivery: Delivery | undefined): void;
  reject(err: Error): void;
}

interface Pull {
  remaining: number;
  timer: NodeJS.Timeout;
}

/**
 * Consumption of one subscription by one bus instance: merges the subscription's JetStream
 * pull consumers (one per topic plus the direct one; NATS 2.9 cannot filter several subjects
 * in one consumer) into one queue of deliveries shared by every `consume` iteration of it.
 *
 * Pull requests are sent only while iterations wait (at most one per consumer, for as many
 * messages as there are waiters), all answered on one inbox subscription that lives as long
 * as this puller, so nothing a pull request fetches is ever dropped. A pull cannot be
 * cancelled, so a message may arrive when nobody waits any more (several consumers answered
 * at once, or the waiter was aborted): it is buffered for the next `next()` with its lease
 * renewed (`+WPI`), and released (`-NAK`, which counts as a delivery) after 30 s or on close.
 */
export class SubscriptionPuller {
  private readonly inbox: string;
  private readonly sub: Subscription;
  private readonly waiters: Waiter[] = [];
  private readonly buffer: Held[] = [];
  private readonly pulls = new Map<string, Pull>();
  private meta: SubscriptionMeta | undefined;
  private metaExpiresAt = 0;
  private refreshing = false;
  private pausedUntil = 0;
  private wakeTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly ctx: PullerContext,
    private readonly subscription: string,
    inbox: string,
  ) {
    this.inbox = inbox;
    this.sub = ctx.nc.subscribe(`${inbox}.>`, { callback: (err, msg) => this.onMessage(err, msg) });
  }

  /** Reads the metadata now; rejects with NotFoundError when the subscription does not exist. */
  async load(): Promise<void> {
    let meta: SubscriptionMeta | undefined;
    try {
      meta = await this.ctx.loadMeta(this.subscription);
    } catch (err) {
      throw wrapDriverError(ADAPTER, 'consume', err);
    }
    this.setMeta(meta);
    if (!meta) throw new NotFoundError(`subscription "${this.subscription}" does not exist`);
  }

  /** Bindings or lease changed (or the subscription was deleted): re-read before the next pull. */
  invalidate(): void {
    this.metaExpiresAt = 0;
    this.pump();
  }

  /**
   * The connection was re-established (the server restarted, or another one took over). Pull
   * requests sent before are gone with the old connection and will never be answered: pull
   * again now instead of waiting for their safety-net timers (`pullExpiresMs` + 2 s).
   */
  reconnected(): void {
    if (this.closed) return;
    for (const pull of this.pulls.values()) clearTimeout(pull.timer);
    this.pulls.clear();
    this.metaExpiresAt = 0;
    this.pausedUntil = 0;
    this.pump();
  }

  /** Resolves with the next delivery, or undefined once `signal` is aborted or the bus closed. */
  take(signal: AbortSignal): Promise<Delivery | undefined> {
    return new Promise((resolve, reject) => {
      if (this.closed || signal.aborted) return resolve(undefined);
      const onAbort = (): void => {
        const index = this.waiters.indexOf(waiter);
        if (index >= 0) this.waiters.splice(index, 1);
        resolve(undefined);
      };
      const waiter: Waiter = {
        resolve: (d) => {
          signal.removeEventListener('abort', onAbort);
          resolve(d);
        },
        reject: (err) => {
          signal.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
      this.pump();
    });
  }

  /** Ends every waiting `take`, releases buffered messages; the connection is drained by the bus. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const waiter of this.waiters.splice(0)) waiter.resolve(undefined);
    for (const held of this.buffer.splice(0)) this.release(held);
    for (const pull of this.pulls.values()) clearTimeout(pull.timer);
    this.pulls.clear();
    clearTimeout(this.wakeTimer);
    this.sub.unsubscribe();
  }

  private setMeta(meta: SubscriptionMeta | undefined): void {
    this.meta = meta;
    this.metaExpiresAt = Date.now() + this.ctx.pullExpiresMs;
    if (!meta) {
      const err = new NotFoundError(`subscription "${this.subscription}" does not exist`);
      for (const waiter of this.waiters.splice(0)) waiter.reject(err);
    }
  }

  /** Hands buffered messages to waiters, then makes sure every consumer has a pull for the rest. */
  private pump(): void {
    if (this.closed) return;
    while (this.waiters.length > 0 && this.buffer.length > 0) {
      this.handOut(this.buffer.shift() as Held, this.waiters.shift() as Waiter);
    }
    const want = this.waiters.length;
    if (want === 0) return;
    const now = Date.now();
    if (now >= this.metaExpiresAt) this.refresh();
    if (!this.meta) return;
    if (now < this.pausedUntil) return this.pumpIn(this.pausedUntil - now);
    const { names } = this.ctx;
    const consumers = [
      ...this.meta.topics.map((t) => names.topicConsumer(this.subscription, t)),
      names.directConsumer(this.subscription),
    ];
    for (const consumer of consumers) if (!this.pulls.has(consumer)) this.pull(consumer, want);
  }

  private pumpIn(ms: number): void {
    if (this.wakeTimer !== undefined || this.closed) return;
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = undefined;
      this.pump();
    }, ms);
  }

  private refresh(): void {
    if (this.refreshing) return;
    this.refreshing = true;
    this.ctx.loadMeta(this.subscription).then(
      (meta) => {
        this.refreshing = false;
        this.setMeta(meta);
        this.pump();
      },
      (err: unknown) => {
        this.refreshing = false;
        this.ctx.logger?.warn(
          { err, subscription: this.subscription },
          `${ADAPTER}: refresh failed`,
        );
        this.metaExpiresAt = Date.now() + BACKOFF_MS;
        this.pumpIn(BACKOFF_MS);
      },
    );
  }

  private pull(consumer: string, batch: number): void {
    const { nc, names, pullExpiresMs } = this.ctx;
    // Safety net: a pull on a consumer deleted meanwhile gets no answer at all.
    const timer = setTimeout(() => {
      if (this.pulls.get(consumer) !== pull) return;
      this.pulls.delete(consumer);
      this.metaExpiresAt = 0;
      this.pump();
    }, pullExpiresMs + 2_000);
    const pull: Pull = { remaining: batch, timer };
    this.pulls.set(consumer, pull);
    try {
      const request = JSON.stringify({ batch, expires: pullExpiresMs * 1_000_000 });
      nc.publish(`$JS.API.CONSUMER.MSG.NEXT.${names.stream}.${consumer}`, request, {
        reply: `${this.inbox}.${consumer}`,
      });
    } catch (err) {
      clearTimeout(timer);
      this.pulls.delete(consumer);
      this.ctx.logger?.warn({ err, consumer }, `${ADAPTER}: pull request failed`);
      this.pausedUntil = Date.now() + BACKOFF_MS;
      this.pumpIn(BACKOFF_MS);
    }
  }

  private onMessage(err: Error | null, msg: Msg): void {
    if (err) {
      this.ctx.logger?.warn({ err }, `${ADAPTER}: inbox subscription failed`);
      return;
    }
    // Statuses come on the inbox subject; messages keep their stream subject.
    const consumer = msg.reply
      ? parseAckSubject(msg.reply)?.consumer
      : msg.subject.slice(this.inbox.length + 1);
    const pull = consumer === undefined ? undefined : this.pulls.get(consumer);
    const endPull = (): void => {
      if (!pull) return;
      clearTimeout(pull.timer);
      this.pulls.delete(consumer as string);
    };
    if (!msg.reply) {
      // A status: 408 the pull expired, 404 nothing to fetch, 409 consumer deleted or limits.
      const code = msg.headers?.code ?? 0;
      if (code === 100) return; // heartbeat
      endPull();
      if (code !== 408 && code !== 404) {
        this.metaExpiresAt = 0;
        this.pausedUntil = Date.now() + BACKOFF_MS;
      }
      return this.pump();
    }
    if (pull && --pull.remaining <= 0) endPull();
    const held = this.hold(msg);
    if (!held) return this.pump();
    if (this.closed) return this.release(held);
    const waiter = this.waiters.shift();
    if (waiter) this.handOut(held, waiter);
    else this.keep(held);
    this.pump();
  }

  private hold(msg: Msg): Held | undefined {
    const deliveryCount = parseAckSubject(msg.reply ?? '')?.deliveryCount;
    if (deliveryCount === undefined) {
      this.ctx.logger?.warn(
        { subject: msg.subject },
        `${ADAPTER}: ignored a non-JetStream message`,
      );
      return undefined;
    }
    const topicPrefix = `${this.ctx.names.prefix}.t.`;
    const message: BusMessage = {
      // Fallbacks keep foreign messages (published without Ion's headers) deliverable, so the
      // consumer can dead-letter them instead of crashing.
      id: header(msg, 'Ion-Id') ?? header(msg, 'Nats-Msg-Id') ?? msg.reply ?? '',
      topic:
        header(msg, 'Ion-Topic') ??
        (msg.subject.startsWith(topicPrefix) ? msg.subject.slice(topicPrefix.length) : ''),
      body: new TextDecoder().decode(msg.data),
    };
    const now = Date.now();
    const leaseMs = this.meta?.leaseMs ?? 0;
    const entry: LiveEntry = { leaseEndsAt: now + leaseMs - leaseMargin(leaseMs) };
    const { live } = this.ctx;
    if (live.size > 10_000) for (const [k, e] of live) if (e.leaseEndsAt < now) live.delete(k);
    live.set(liveKey(this.subscription, message.id), entry);
    return { msg, message, deliveryCount, entry, heldSince: now };
  }

  /** Keeps a message nobody waits for: renews its lease until taken, for at most MAX_HOLD_MS. */
  private keep(held: Held): void {
    this.buffer.push(held);
    const leaseMs = this.meta?.leaseMs ?? 1_000;
    held.keepalive = setInterval(
      () => {
        const now = Date.now();
        if (now - held.heldSince > MAX_HOLD_MS) {
          const index = this.buffer.indexOf(held);
          if (index >= 0) this.buffer.splice(index, 1);
          return this.release(held);
        }
        this.publishAck(held, '+WPI');
        held.entry.leaseEndsAt = now + leaseMs - leaseMargin(leaseMs);
      },
      Math.max(leaseMs / 3, 20),
    );
  }

  /** Gives a buffered message back to the server (counts as a delivery). */
  private release(held: Held): void {
    clearInterval(held.keepalive);
    this.publishAck(held, '-NAK');
    const key = liveKey(this.subscription, held.message.id);
    if (this.ctx.live.get(key) === held.entry) this.ctx.live.delete(key);
  }

  private publishAck(held: Held, payload: string): void {
    try {
      this.ctx.nc.publish(held.msg.reply ?? '', payload);
    } catch (err) {
      this.ctx.logger?.warn({ err }, `${ADAPTER}: ${payload} failed`);
    }
  }

  private handOut(held: Held, waiter: Waiter): void {
    clearInterval(held.keepalive);
    waiter.resolve(this.delivery(held));
  }

  private delivery(held: Held): Delivery {
    return createDelivery(this.ctx, this.subscription, held, this.meta?.leaseMs ?? 0);
  }
}
