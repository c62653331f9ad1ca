import type { Channel, ConsumeMessage } from 'amqplib';
import { NotFoundError, wrapDriverError } from '../../core/errors.js';
import type { Delivery } from '../event-bus.js';
import { ADAPTER, isNotFound, type BusLogger } from './amqp-session.js';
import { decodeMessage, deliveryCountOf } from './rabbitmq-topology.js';

/** What a consumer needs from its bus. */
export interface ConsumerHost {
  readonly logger: BusLogger | undefined;
  isClosed(): boolean;
  /** The main queue of a subscription. */
  queueOf(subscription: string): string;
  /** The subscription's lease; rejects with NotFoundError when it does not exist. */
  leaseMs(subscription: string): Promise<number>;
  /** A fresh channel on the bus connection. */
  channel(): Promise<Channel>;
  /** Publishes a copy of `msg` (confirmed) carrying `deliveryCount`, delayed or dead. */
  delay(
    subscription: string,
    msg: ConsumeMessage,
    deliveryCount: number,
    delayMs: number,
  ): Promise<void>;
  deadLetter(
    subscription: string,
    msg: ConsumeMessage,
    deliveryCount: number,
    reason: string,
  ): Promise<void>;
  forget(consumer: RabbitMqConsumer): void;
  /** A delivery of `subscription` is now held (+1) or no longer held (-1) by this process. */
  countHeld(subscription: string, delta: 1 | -1): void;
}

const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5_000;

type DeliveryState = 'held' | 'settling' | 'done' | 'lapsed';

/**
 * One `consume()` iteration. It owns one channel (deliveries are acked on the channel that
 * received them) with a per-consumer prefetch of 1, and each pending `next()` runs its own
 * AMQP consumer that is cancelled as soon as it received one message. So the broker hands
 * this process exactly as many messages as the caller asked for: nothing sits in a local
 * buffer where a competing consumer could not get it, and waiting costs no polling.
 *
 * Leases are emulated (RabbitMQ only redelivers when the channel dies): each delivery arms
 * a timer of the subscription's leaseMs, `extend()` re-arms it, and when it fires the
 * delivery is returned to the queue (basic.nack requeue, which the quorum queue counts in
 * `x-delivery-count`). Every later settle of that delivery is a no-op (logged). A process
 * that dies closes its connection, and the broker returns its unacked deliveries: that is
 * the crash recovery.
 *
 * The channel stays open after the iteration ends while deliveries are still held, so a
 * draining dispatcher can still ack them; it closes with the last one.
 */
export class RabbitMqConsumer implements AsyncIterator<Delivery> {
  private channel: Promise<Channel> | undefined;
  private finished = false;
  private held = 0;
  /** Ends the pending waits (abort, close). */
  private readonly stops = new Set<() => void>();
  private readonly onAbort = (): void => {
    this.stop();
  };

  constructor(
    private readonly host: ConsumerHost,
    private readonly subscription: string,
    private readonly signal: AbortSignal,
  ) {
    signal.addEventListener('abort', this.onAbort, { once: true });
  }

  private get over(): boolean {
    return this.finished || this.signal.aborted || this.host.isClosed();
  }

  async next(): Promise<IteratorResult<Delivery>> {
    for (let attempt = 0; ; attempt++) {
      if (this.over) return this.stop();
      try {
        const leaseMs = await this.host.leaseMs(this.subscription);
        const ch = await this.openChannel();
        const msg = await this.receive(ch);
        if (!msg) return this.stop();
        return { done: false, value: this.makeDelivery(ch, msg, leaseMs) };
      } catch (err) {
        if (this.over) return this.stop();
        if (err instanceof NotFoundError || isNotFound(err) || isNotFound(causeOf(err))) {
          throw new NotFoundError(`subscription "${this.subscription}" does not exist`, {
            cause: err,
          });
        }
        // Broker or connection trouble: keep the iteration alive and try again.
        const waitMs = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** Math.min(attempt, 5));
        this.host.logger?.warn(
          { err: wrapDriverError(ADAPTER, 'consume', err), subscription: this.subscription },
          `${ADAPTER}: consume failed; retrying in ${waitMs} ms`,
        );
        await this.pause(waitMs);
      }
    }
  }

  return(): Promise<IteratorResult<Delivery>> {
    return Promise.resolve(this.stop());
  }

  /** Ends the iteration and every pending `next()`. */
  stop(): IteratorResult<Delivery> {
    if (!this.finished) {
      this.finished = true;
      this.signal.removeEventListener('abort', this.onAbort);
      for (const stop of [...this.stops]) stop();
      this.host.forget(this);
      this.maybeCloseChannel();
    }
    return { done: true, value: undefined };
  }

  private openChannel(): Promise<Channel> {
    if (!this.channel) {
      const opening = this.host.channel().then(async (ch) => {
        ch.on('close', () => {
          if (this.channel === opening) this.channel = undefined;
        });
        await ch.prefetch(1); // per consumer: one message per pending next()
        return ch;
      });
      opening.catch(() => {
        if (this.channel === opening) this.channel = undefined;
      });
      this.channel = opening;
    }
    return this.channel;
  }

  private maybeCloseChannel(): void {
    if (!this.finished || this.held > 0 || !this.channel) return;
    const channel = this.channel;
    this.channel = undefined;
    channel.then((ch) => ch.close()).catch(() => undefined);
  }

  /** One message from a consumer of its own, or undefined when the iteration ended first. */
  private receive(ch: Channel): Promise<ConsumeMessage | undefined> {
    const queue = this.host.queueOf(this.subscription);
    return new Promise((resolve, reject) => {
      // Ended while the lease or channel was being fetched: nothing to wait for.
      if (this.over) return resolve(undefined);
      let over = false;
      let tag: string | undefined;
      const cancel = (): void => {
        if (tag !== undefined) ch.cancel(tag).catch(() => undefined);
      };
      const finish = (settle: () => void): void => {
        if (over) return;
        over = true;
        this.stops.delete(stop);
        ch.off('close', onClose);
        cancel();
        settle();
      };
      const stop = (): void => finish(() => resolve(undefined));
      const onClose = (): void => finish(() => reject(new Error('channel closed')));
      this.stops.add(stop);
      ch.on('close', onClose);
      ch.consume(
        queue,
        (msg) => {
          if (msg === null) {
            // Cancelled by the broker: the queue was deleted.
            finish(() =>
              reject(new NotFoundError(`subscription "${this.subscription}" was deleted`)),
            );
          } else if (over) {
            // Arrived between stop and cancel-ok: give it back.
            safely(() => ch.nack(msg, false, true));
          } else {
            finish(() => resolve(msg));
          }
        },
        { noAck: false },
      ).then(
        (ok) => {
          tag = ok.consumerTag;
          if (over) cancel();
        },
        (err: unknown) => finish(() => reject(err instanceof Error ? err : new Error(String(err)))),
      );
    });
  }

  private makeDelivery(ch: Channel, msg: ConsumeMessage, leaseMs: number): Delivery {
    const { host, subscription } = this;
    const deliveryCount = deliveryCountOf(msg);
    let state: DeliveryState = 'held';
    let timer: NodeJS.Timeout | undefined;
    const arm = (): void => {
      clearTimeout(timer);
      timer = setTimeout(lapse, leaseMs);
      timer.unref();
    };
    const release = (final: DeliveryState): void => {
      clearTimeout(timer);
      state = final;
      this.held--;
      host.countHeld(subscription, -1);
      this.maybeCloseChannel();
    };
    const lapse = (): void => {
      if (state !== 'held') return;
      release('lapsed');
      host.logger?.warn(
        { subscription, messageId: msg.properties.messageId as unknown },
        `${ADAPTER}: lease lapsed; message returned to the queue`,
      );
      safely(() => ch.nack(msg, false, true));
    };
    /** Runs a settle once; a settle that lost the lease or came second is a no-op. */
    const settle = async (action: string, final: boolean, apply: () => Promise<void> | void) => {
      if (state !== 'held') {
        if (state === 'lapsed') {
          host.logger?.warn(
            { subscription, messageId: msg.properties.messageId as unknown, action },
            `${ADAPTER}: ${action} ignored: this delivery no longer owns the lease`,
          );
        }
        return;
      }
      if (!final) return void apply();
      state = 'settling';
      clearTimeout(timer);
      try {
        await apply();
      } catch (err) {
        // The copy was not confirmed: the delivery is still ours, the caller may retry.
        state = 'held';
        arm();
        throw wrapDriverError(ADAPTER, action, err);
      }
      release('done');
    };
    /** Channel ack/nack send no reply: on a dead channel the broker already requeued. */
    const channelOp = (action: string, op: () => void) => () => {
      try {
        op();
      } catch (err) {
        host.logger?.warn(
          { err, subscription, action },
          `${ADAPTER}: ${action} not sent (channel closed); the broker redelivers the message`,
        );
      }
    };
    this.held++;
    host.countHeld(subscription, 1);
    arm();
    return {
      message: decodeMessage(msg),
      subscription,
      deliveryCount,
      ack: () =>
        settle(
          'ack',
          true,
          channelOp('ack', () => ch.ack(msg)),
        ),
      nack: (options) => {
        const delayMs = Math.max(0, Math.round(options?.delayMs ?? 0));
        if (delayMs === 0)
          return settle(
            'nack',
            true,
            channelOp('nack', () => ch.nack(msg, false, true)),
          );
        return settle('nack', true, async () => {
          await host.delay(subscription, msg, deliveryCount, delayMs);
          channelOp('nack', () => ch.ack(msg))();
        });
      },
      extend: () => settle('extend', false, arm),
      deadLetter: (reason) =>
        settle('deadLetter', true, async () => {
          await host.deadLetter(subscription, msg, deliveryCount, reason);
          channelOp('deadLetter', () => ch.ack(msg))();
        }),
    };
  }

  /** Waits `ms`, or less if the iteration ends. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      if (this.over) return resolve();
      const done = (): void => {
        clearTimeout(timer);
        this.stops.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.stops.add(done);
    });
  }
}

function causeOf(err: unknown): unknown {
  return (err as { cause?: unknown } | undefined)?.cause;
}

function safely(op: () => void): void {
  try {
    op();
  } catch {
    // The channel is gone: the broker returns the message by itself.
  }
}
