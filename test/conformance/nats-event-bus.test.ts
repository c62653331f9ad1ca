import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { connect, type NatsConnection } from 'nats';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Delivery } from '../../src/bus/event-bus.js';
import { NatsEventBus } from '../../src/bus/nats/nats-event-bus.js';
import { IonError, ValidationError } from '../../src/core/errors.js';
import { eventBusConformance } from './event-bus.suite.js';

/*
 * Runs against a real NATS server with JetStream (2.9+). No skip when it is unreachable:
 * start() rejects and every test fails, so a missing server is never mistaken for a pass.
 */
const url = process.env.ION_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';

/** One admin connection for the whole file, used to delete the tests' streams. */
let admin: NatsConnection | undefined;
async function deleteStream(stream: string): Promise<void> {
  admin ??= await connect({ servers: url, name: 'ion-test-admin' });
  const jsm = await admin.jetstreamManager();
  await jsm.streams.delete(stream).catch(() => undefined);
}

afterAll(async () => {
  await admin?.drain();
});

const streamName = (): string => `ion_test_${randomUUID().replaceAll('-', '')}`;

async function startBus(stream = streamName()): Promise<NatsEventBus> {
  const bus = new NatsEventBus({ servers: url, stream, pullExpiresMs: 2_000 });
  await bus.start();
  return bus;
}

eventBusConformance(
  'NatsEventBus',
  async () => {
    const stream = streamName();
    const bus = await startBus(stream);
    return {
      bus,
      cleanup: async () => {
        await bus.close();
        await deleteStream(stream);
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

function delivered(r: IteratorResult<Delivery, unknown>): Delivery {
  if (r.done) throw new Error('iteration ended');
  return r.value;
}

async function nextOf(it: AsyncIterator<Delivery>): Promise<Delivery> {
  return delivered(await within(it.next()));
}

describe('NatsEventBus: two instances on one stream (as two processes)', () => {
  let stream: string;
  let a: NatsEventBus;
  let b: NatsEventBus;
  let controller: AbortController;

  beforeEach(async () => {
    stream = streamName();
    a = await startBus(stream);
    b = await startBus(stream);
    controller = new AbortController();
  });

  afterEach(async () => {
    controller.abort();
    await a.close();
    await b.close();
    await deleteStream(stream);
  });

  const iter = (bus: NatsEventBus, sub: string): AsyncIterator<Delivery> =>
    bus.consume(sub, { signal: controller.signal })[Symbol.asyncIterator]();

  it('are competing consumers: each message is delivered to exactly one of them', async () => {
    const topic = `topic-${randomUUID()}`;
    const sub = `sub-${randomUUID()}`;
    await a.ensureSubscription({ name: sub, topics: [topic], leaseMs: 60_000 });
    await b.ensureSubscription({ name: sub, topics: [topic], leaseMs: 60_000 });
    const ids = Array.from({ length: 40 }, () => `evt-${randomUUID()}`);
    const got: { bus: string; id: string }[] = [];
    const run = async (busName: string, bus: NatsEventBus): Promise<void> => {
      for await (const d of bus.consume(sub, { signal: controller.signal })) {
        got.push({ bus: busName, id: d.message.id });
        await d.ack();
        await delay(2);
      }
    };
    const runs = [run('a', a), run('a', a), run('b', b), run('b', b)];
    // Published through both instances, and each id twice: the stream stores one copy.
    for (const [i, id] of ids.entries()) {
      await (i % 2 ? a : b).publish({ id, topic, body: '{}' });
      await (i % 2 ? b : a).publish({ id, topic, body: '{}' });
    }
    const deadline = Date.now() + 10_000;
    while (got.length < ids.length && Date.now() < deadline) await delay(10);
    await delay(200); // a duplicate, if any, would arrive now
    controller.abort();
    await within(Promise.all(runs));
    expect(got.map((g) => g.id).sort()).toEqual([...ids].sort());
    expect(new Set(got.map((g) => g.bus))).toEqual(new Set(['a', 'b']));
  });

  it('a message held by one instance is invisible to the other, which gets the next one', async () => {
    const topic = `topic-${randomUUID()}`;
    const sub = `sub-${randomUUID()}`;
    await a.ensureSubscription({ name: sub, topics: [topic], leaseMs: 60_000 });
    await a.publish({ id: 'm1', topic, body: '1' });
    await a.publish({ id: 'm2', topic, body: '2' });
    const held = await nextOf(iter(a, sub));
    const other = await nextOf(iter(b, sub));
    expect([held.message.id, other.message.id]).toEqual(['m1', 'm2']);
    await held.ack();
    await other.ack();
  });

  it('a lease lapsed in one instance is recovered by the other', async () => {
    const topic = `topic-${randomUUID()}`;
    const sub = `sub-${randomUUID()}`;
    await a.ensureSubscription({ name: sub, topics: [topic], leaseMs: 300 });
    await a.publish({ id: 'job', topic, body: '{}' });
    const crashed = await nextOf(iter(a, sub));
    await a.close(); // the "process" dies holding the lease
    const recovered = await nextOf(iter(b, sub));
    expect([recovered.message.id, recovered.deliveryCount]).toEqual([crashed.message.id, 2]);
    await recovered.ack();
  });

  it('a nack from an instance whose lease lapsed does not disturb the new owner', async () => {
    const topic = `topic-${randomUUID()}`;
    const sub = `sub-${randomUUID()}`;
    await a.ensureSubscription({ name: sub, topics: [topic], leaseMs: 300 });
    await a.publish({ id: 'job', topic, body: '{}' });
    const stale = await nextOf(iter(a, sub));
    const owner = await nextOf(iter(b, sub));
    expect(owner.deliveryCount).toBe(2);
    await stale.nack();
    await owner.extend();
    await a.publish({ id: 'marker', topic, body: '{}' });
    expect((await nextOf(iter(b, sub))).message.id).toBe('marker');
    await owner.ack();
  });

  it('a binding added through one instance is picked up by the other one consuming', async () => {
    const [t1, t2] = [`topic-${randomUUID()}`, `topic-${randomUUID()}`];
    const sub = `sub-${randomUUID()}`;
    await a.ensureSubscription({ name: sub, topics: [t1], leaseMs: 60_000 });
    const pending = iter(a, sub).next();
    await delay(50);
    await b.ensureSubscription({ name: sub, topics: [t1, t2], leaseMs: 60_000 });
    await b.publish({ id: 'on-t2', topic: t2, body: '{}' });
    // Picked up when a's pending pull ends (pullExpiresMs) and it re-reads the bindings.
    const d = delivered(await within(pending, 8_000));
    expect(d.message).toEqual({ id: 'on-t2', topic: t2, body: '{}' });
    await d.ack();
  });
});

describe('NatsEventBus: adapter specifics', () => {
  let stream: string;
  let bus: NatsEventBus;
  const controller = new AbortController();

  beforeEach(async () => {
    stream = streamName();
    bus = await startBus(stream);
  });

  afterEach(async () => {
    await bus.close();
    await deleteStream(stream);
  });

  it('merges topic and direct deliveries of a subscription bound to several topics, in order per topic', async () => {
    const [t1, t2] = [`a.b-${randomUUID()}`, `c_${randomUUID()}`];
    const sub = `sub with spaces/and.dots ${randomUUID()}`;
    await bus.ensureSubscription({ name: sub, topics: [t1, t2, t1], leaseMs: 60_000 });
    for (let i = 0; i < 3; i++) await bus.publish({ id: `t1-${i}`, topic: t1, body: `${i}` });
    for (let i = 0; i < 3; i++) await bus.publish({ id: `t2-${i}`, topic: t2, body: `${i}` });
    await bus.sendTo(sub, { id: 'direct', topic: 'anything', body: 'd' });
    const it = bus.consume(sub, { signal: controller.signal })[Symbol.asyncIterator]();
    const got: string[] = [];
    for (let i = 0; i < 7; i++) {
      const d = await nextOf(it);
      got.push(d.message.id);
      await d.ack();
    }
    expect([...got].sort()).toEqual(['direct', 't1-0', 't1-1', 't1-2', 't2-0', 't2-1', 't2-2']);
    expect(got.filter((id) => id.startsWith('t1'))).toEqual(['t1-0', 't1-1', 't1-2']);
    expect(got.filter((id) => id.startsWith('t2'))).toEqual(['t2-0', 't2-1', 't2-2']);
  });

  it('rejects invalid messages and topics that are not subject tokens with ValidationError', async () => {
    const sub = `sub-${randomUUID()}`;
    await bus.ensureSubscription({ name: sub, topics: ['t'], leaseMs: 60_000 });
    const bad = [
      { id: '', topic: 't', body: '{}' },
      { id: 'x', topic: 'has space', body: '{}' },
      { id: 'y', topic: 'wild.*', body: '{}' },
      { id: 'z', topic: 't', body: null },
    ];
    for (const m of bad) {
      await expect(bus.publish(m as never)).rejects.toBeInstanceOf(ValidationError);
      await expect(bus.sendTo(sub, m as never)).rejects.toBeInstanceOf(ValidationError);
    }
    await expect(
      bus.ensureSubscription({ name: sub, topics: ['a..b'], leaseMs: 1_000 }),
    ).rejects.toBeInstanceOf(ValidationError);
  });

  it('round-trips ids and topics that need escaping in headers', async () => {
    const sub = `sub-${randomUUID()}`;
    await bus.ensureSubscription({ name: sub, topics: ['t'], leaseMs: 60_000 });
    const m = { id: 'id with spaces, ünï\r\ncode: and %25', topic: 't', body: '{}' };
    await bus.publish(m);
    const d = await nextOf(bus.consume(sub, { signal: controller.signal })[Symbol.asyncIterator]());
    expect(d.message).toEqual(m);
    await d.ack();
  });

  it('rejects a body larger than the server max_payload with ValidationError', async () => {
    const sub = `sub-${randomUUID()}`;
    await bus.ensureSubscription({ name: sub, topics: ['t'], leaseMs: 60_000 });
    const body = 'x'.repeat(70 * 1024 * 1024); // above the largest max_payload NATS accepts
    await expect(bus.publish({ id: 'big', topic: 't', body })).rejects.toBeInstanceOf(
      ValidationError,
    );
    await bus.publish({ id: 'ok', topic: 't', body: '{}' });
    const d = await nextOf(bus.consume(sub, { signal: controller.signal })[Symbol.asyncIterator]());
    expect(d.message.id).toBe('ok');
    await d.ack();
  });

  it('start rejects with an unavailable IonError when the server cannot be reached', async () => {
    const unreachable = new NatsEventBus({ servers: 'nats://127.0.0.1:1', stream: streamName() });
    const err: unknown = await unreachable.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(IonError);
    expect((err as IonError).code).toBe('unavailable');
    await unreachable.close();
  });

  it('refuses calls after close', async () => {
    await bus.close();
    await expect(bus.publish({ id: '1', topic: 't', body: 'b' })).rejects.toMatchObject({
      code: 'unavailable',
    });
    const iterable = bus.consume('s', { signal: controller.signal });
    const after = await iterable[Symbol.asyncIterator]().next();
    expect(after.done).toBe(true);
  });
});
