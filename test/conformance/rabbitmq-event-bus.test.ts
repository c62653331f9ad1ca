import { randomUUID } from 'node:crypto';
import amqp from 'amqplib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Delivery, SubscriptionSpec } from '../../src/bus/event-bus.js';
import {
  RabbitMqEventBus,
  type RabbitMqEventBusOptions,
} from '../../src/bus/rabbitmq/rabbitmq-event-bus.js';
import { UnavailableError } from '../../src/core/errors.js';
import { eventBusConformance } from './event-bus.suite.js';

/*
 * Runs against a real RabbitMQ (3.10+). No skip when it is unreachable: the factory's
 * start() rejects and every test fails, which is the point of a conformance run.
 */
const url = process.env.ION_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

/** A bus that remembers the subscriptions it created, so cleanup can delete their queues. */
class TrackedBus extends RabbitMqEventBus {
  readonly names = new Set<string>();
  override async ensureSubscription(spec: SubscriptionSpec): Promise<void> {
    this.names.add(spec.name);
    await super.ensureSubscription(spec);
  }
}

function randomOptions(): RabbitMqEventBusOptions {
  const id = randomUUID().slice(0, 8);
  return { url, exchange: `ion-test-${id}`, queuePrefix: `ion-test-${id}.` };
}

/** Deletes the exchange and every queue the buses created (through a fresh connection). */
async function dispose(options: RabbitMqEventBusOptions, names: Iterable<string>): Promise<void> {
  const janitor = new RabbitMqEventBus(options);
  await janitor.start();
  for (const name of names) await janitor.deleteSubscription(name);
  await janitor.close();
  const conn = await amqp.connect(url);
  try {
    const ch = await conn.createChannel();
    await ch.deleteExchange(options.exchange);
  } finally {
    await conn.close();
  }
}

eventBusConformance(
  'RabbitMqEventBus',
  async () => {
    const options = randomOptions();
    const bus = new TrackedBus(options);
    await bus.start();
    return {
      bus,
      cleanup: async () => {
        await bus.close();
        await dispose(options, bus.names);
      },
    };
  },
  { leaseMsForTests: 500 },
);

async function within<T>(promise: Promise<T>, ms = 5_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`nothing within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function nextOf(it: AsyncIterator<Delivery>): Promise<Delivery> {
  const r = await within(it.next());
  if (r.done) throw new Error('iteration ended');
  return r.value;
}

describe('RabbitMqEventBus: two instances (as two worker processes)', () => {
  let options: RabbitMqEventBusOptions;
  let a: TrackedBus;
  let b: TrackedBus;
  const controller = new AbortController();
  const signal = controller.signal;

  beforeEach(async () => {
    options = randomOptions();
    a = new TrackedBus(options);
    b = new TrackedBus(options);
    await a.start();
    await b.start();
  });

  afterEach(async () => {
    await a.close();
    await b.close();
    await dispose(options, [...a.names, ...b.names]);
  });

  it('competing consumers on two instances each get different messages', async () => {
    const topic = `topic-${randomUUID()}`;
    await a.ensureSubscription({ name: 'sub', topics: [topic], leaseMs: 60_000 });
    const sent = Array.from({ length: 10 }, (_, n) => `evt-${n}`);
    for (const id of sent) await a.publish({ id, topic, body: '{}' });
    const [ia, ib] = [a, b].map((bus) => bus.consume('sub', { signal })[Symbol.asyncIterator]());
    const got: string[] = [];
    const perBus = [0, 0];
    // Alternate so both instances take part; each holds one delivery at a time.
    for (let i = 0; i < sent.length; i++) {
      const d = await nextOf(
        i % 2 === 0 ? (ia as AsyncIterator<Delivery>) : (ib as AsyncIterator<Delivery>),
      );
      got.push(d.message.id);
      perBus[i % 2] = (perBus[i % 2] ?? 0) + 1;
      await d.ack();
    }
    expect([...got].sort()).toEqual([...sent].sort());
    expect(perBus).toEqual([5, 5]);
  });

  it('redelivers to the other instance, counted, when a consumer connection closes mid-delivery', async () => {
    const topic = `topic-${randomUUID()}`;
    await a.ensureSubscription({ name: 'sub', topics: [topic], leaseMs: 60_000 });
    await a.publish({ id: 'evt-1', topic, body: 'x' });
    const held = await nextOf(a.consume('sub', { signal })[Symbol.asyncIterator]());
    expect(held.deliveryCount).toBe(1);
    await a.close(); // as if the worker process died: the broker returns the message
    const d = await nextOf(b.consume('sub', { signal })[Symbol.asyncIterator]());
    expect([d.message.id, d.deliveryCount]).toEqual(['evt-1', 2]);
    await held.ack(); // on a closed connection: a no-op, never a throw
    await d.ack();
  });

  it('an instance that never called ensureSubscription uses the lease stored with the subscription', async () => {
    const topic = `topic-${randomUUID()}`;
    await a.ensureSubscription({ name: 'sub', topics: [topic], leaseMs: 60_000 });
    await a.ensureSubscription({ name: 'sub', topics: [topic], leaseMs: 300 });
    await a.publish({ id: 'evt-1', topic, body: 'x' });
    const first = await nextOf(b.consume('sub', { signal })[Symbol.asyncIterator]());
    // b read the 300 ms lease: the message comes back without b settling it.
    const again = await nextOf(b.consume('sub', { signal })[Symbol.asyncIterator]());
    expect([again.message.id, again.deliveryCount]).toEqual([first.message.id, 2]);
    await again.ack();
  });

  it('deadLetter parks a copy in the subscription DLQ with the reason and delivery count', async () => {
    const topic = `topic-${randomUUID()}`;
    await a.ensureSubscription({ name: 'sub', topics: [topic], leaseMs: 60_000 });
    await a.publish({ id: 'evt-1', topic, body: 'not json' });
    const it = a.consume('sub', { signal })[Symbol.asyncIterator]();
    await (await nextOf(it)).nack({ delayMs: 20 });
    await (await nextOf(it)).deadLetter('malformed body');
    const conn = await amqp.connect(url);
    try {
      const ch = await conn.createChannel();
      const parked = await ch.get(`${options.queuePrefix}sub.dlq`, { noAck: true });
      expect(parked).not.toBe(false);
      if (parked === false) return;
      expect(parked.content.toString()).toBe('not json');
      expect(parked.properties.messageId).toBe('evt-1');
      expect(parked.properties.headers?.['x-ion-dead-reason']).toBe('malformed body');
      expect(parked.properties.headers?.['x-ion-delivery-count']).toBe(2);
    } finally {
      await conn.close();
    }
  });
});

describe('RabbitMqEventBus: broker unreachable', () => {
  it('start rejects with UnavailableError', async () => {
    const bus = new RabbitMqEventBus({ url: 'amqp://guest:guest@127.0.0.1:1', exchange: 'x' });
    await expect(bus.start()).rejects.toBeInstanceOf(UnavailableError);
    await bus.close();
  });
});
