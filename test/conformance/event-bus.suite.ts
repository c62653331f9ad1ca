import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { NotFoundError } from '../../src/core/errors.js';
import type { BusMessage, Delivery, EventBus, QueueDepth } from '../../src/bus/event-bus.js';
import { waitFor } from '../support/wait.js';

/** What an adapter's test provides: a started bus and a way to dispose of it. */
export type EventBusFactory = () => Promise<{ bus: EventBus; cleanup(): Promise<void> }>;

export interface EventBusConformanceOptions {
  /** Short lease used by the tests that let a lease lapse. Default 500 ms. */
  leaseMsForTests?: number;
}

/**
 * The EventBus conformance suite, written once and run against every adapter. Each test gets
 * a fresh bus from `factory` and uses random subscription and topic names, so adapters that
 * share a server between tests stay isolated. Absence ("not delivered") is checked with a
 * marker message published afterwards: the next delivery must be the marker.
 *
 * Settling a delivery twice, or after another consumer took its lease, must be a no-op
 * (resolve, change nothing).
 */
export function eventBusConformance(
  name: string,
  factory: EventBusFactory,
  options: EventBusConformanceOptions = {},
): void {
  const leaseMs = options.leaseMsForTests ?? 500;
  /** Lease of subscriptions that must not lapse during a test. */
  const longLeaseMs = 60_000;
  const deadlineMs = 5_000 + leaseMs * 4;

  describe(`EventBus conformance: ${name}`, () => {
    let bus: EventBus;
    let fixture: Awaited<ReturnType<EventBusFactory>>;
    let controllers: AbortController[] = [];

    beforeEach(async () => {
      fixture = await factory();
      bus = fixture.bus;
      controllers = [];
    });

    afterEach(async () => {
      for (const c of controllers) c.abort();
      await fixture.cleanup();
    });

    const uid = (prefix: string): string => `${prefix}-${randomUUID()}`;
    const msg = (topic: string, body = '{"n":1}', id = uid('evt')): BusMessage => ({
      id,
      topic,
      body,
    });

    async function subscription(topics: string[], lease = longLeaseMs): Promise<string> {
      const sub = uid('sub');
      await bus.ensureSubscription({ name: sub, topics, leaseMs: lease });
      return sub;
    }

    function consumer(sub: string): { it: AsyncIterator<Delivery>; controller: AbortController } {
      const controller = new AbortController();
      controllers.push(controller);
      return {
        it: bus.consume(sub, { signal: controller.signal })[Symbol.asyncIterator](),
        controller,
      };
    }

    /** Resolves with the next delivery, failing if none arrives before the deadline. */
    async function within<T>(
      promise: Promise<T>,
      ms = deadlineMs,
      what = 'next delivery',
    ): Promise<T> {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not arrive within ${ms} ms`)), ms);
      });
      try {
        return await Promise.race([promise, timeout]);
      } finally {
        clearTimeout(timer);
      }
    }

    async function next(it: AsyncIterator<Delivery>): Promise<Delivery> {
      return delivered(await within(it.next()));
    }

    /** Lets a lease lapse. Passing time is the behaviour under test here, not synchronisation. */
    const letLeaseLapse = (): Promise<void> => delay(leaseMs * 2);

    /**
     * After `m` was published or sent again: a bus that declares `dedupesById` holds no second
     * copy; one that declares it does not (RabbitMQ) delivers exactly one more copy, which the
     * store's job dedupe drops downstream (DESIGN.md, commit protocol step 1). Either way,
     * nothing else is left.
     */
    async function expectRepublishOutcome(
      it: AsyncIterator<Delivery>,
      topic: string,
      m: BusMessage,
    ): Promise<void> {
      if (!bus.capabilities.dedupesById) {
        const copy = await next(it);
        expect(copy.message.id).toBe(m.id);
        await copy.ack();
      }
      await expectOnlyMarkerNext(it, topic);
    }

    /** Publishes a marker and asserts it is the next delivery: nothing else was available. */
    async function expectOnlyMarkerNext(it: AsyncIterator<Delivery>, topic: string): Promise<void> {
      const marker = msg(topic, 'marker');
      await bus.publish(marker);
      const d = await next(it);
      expect(d.message.id).toBe(marker.id);
      await d.ack();
    }

    /**
     * Waits until the subscription's depth is `want`: brokers may report a change a moment
     * after the call that made it returned.
     */
    async function expectDepth(sub: string, want: QueueDepth): Promise<void> {
      let last: QueueDepth | undefined;
      let failure = '';
      try {
        await waitFor(
          `depth of ${sub} to be ${JSON.stringify(want)}`,
          async () => {
            last = await bus.depth(sub);
            return last.ready === want.ready && last.inFlight === want.inFlight ? last : undefined;
          },
          deadlineMs,
        );
      } catch (err) {
        failure = err instanceof Error ? err.message : String(err);
      }
      expect({ ready: last?.ready, inFlight: last?.inFlight }, failure).toEqual(want);
    }

    it('delivers a published message to a subscription bound to its topic, with deliveryCount 1', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic]);
      const m = msg(topic, '{"hello":"world"}');
      await bus.publish(m);
      const d = await next(consumer(sub).it);
      expect(d.message).toEqual(m);
      expect(d.subscription).toBe(sub);
      expect(d.deliveryCount).toBe(1);
      await d.ack();
    });

    it('copies a message to every subscription bound to its topic (fan-out)', async () => {
      const topic = uid('topic');
      const [a, b] = [await subscription([topic]), await subscription([topic])];
      const m = msg(topic);
      await bus.publish(m);
      const [da, db] = [await next(consumer(a).it), await next(consumer(b).it)];
      expect([da.message.id, da.subscription]).toEqual([m.id, a]);
      expect([db.message.id, db.subscription]).toEqual([m.id, b]);
      await da.ack();
      // Acking one copy does not touch the other subscription's copy.
      expect(db.deliveryCount).toBe(1);
      await db.ack();
    });

    it('drops messages published on a topic no subscription is bound to', async () => {
      const topic = uid('topic');
      await bus.publish(msg(topic, 'lost'));
      const sub = await subscription([topic]);
      await expectOnlyMarkerNext(consumer(sub).it, topic);
    });

    it('does not deliver messages of topics the subscription is not bound to', async () => {
      const [t1, t2] = [uid('topic'), uid('topic')];
      const sub = await subscription([t1]);
      await bus.publish(msg(t2, 'other topic'));
      await expectOnlyMarkerNext(consumer(sub).it, t1);
    });

    it('ensureSubscription is idempotent and keeps the messages the subscription holds', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic]);
      const m = msg(topic);
      await bus.publish(m);
      await bus.ensureSubscription({ name: sub, topics: [topic], leaseMs: longLeaseMs });
      await bus.ensureSubscription({ name: sub, topics: [topic], leaseMs: longLeaseMs });
      const it = consumer(sub).it;
      const d = await next(it);
      expect(d.message.id).toBe(m.id);
      await d.ack();
      await expectOnlyMarkerNext(it, topic);
    });

    it('ensureSubscription replaces the topic bindings', async () => {
      const [t1, t2] = [uid('topic'), uid('topic')];
      const sub = await subscription([t1]);
      await bus.ensureSubscription({ name: sub, topics: [t2], leaseMs: longLeaseMs });
      await bus.publish(msg(t1, 'unbound now'));
      await expectOnlyMarkerNext(consumer(sub).it, t2);
    });

    it('ensureSubscription updates the lease duration', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic], longLeaseMs);
      await bus.ensureSubscription({ name: sub, topics: [topic], leaseMs });
      await bus.publish(msg(topic));
      const first = await next(consumer(sub).it);
      // With the old 60 s lease this would time out.
      const again = await next(consumer(sub).it);
      expect(again.message.id).toBe(first.message.id);
      expect(again.deliveryCount).toBe(2);
      await again.ack();
    });

    it('deleteSubscription removes the subscription and its messages, and is idempotent', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic]);
      await bus.publish(msg(topic, 'held'));
      await bus.deleteSubscription(sub);
      await bus.deleteSubscription(sub);
      await expect(bus.sendTo(sub, msg(topic))).rejects.toBeInstanceOf(NotFoundError);
      await bus.ensureSubscription({ name: sub, topics: [topic], leaseMs: longLeaseMs });
      await expectOnlyMarkerNext(consumer(sub).it, topic);
    });

    it('delivers the oldest ready message first (FIFO)', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic]);
      const sent = [1, 2, 3, 4, 5].map((n) => msg(topic, `{"n":${n}}`));
      for (const m of sent) await bus.publish(m);
      const it = consumer(sub).it;
      const got: string[] = [];
      for (let i = 0; i < sent.length; i++) {
        const d = await next(it);
        got.push(d.message.id);
        await d.ack();
      }
      expect(got).toEqual(sent.map((m) => m.id));
    });

    it('republishing a message that is still ready adds a copy only where the bus declares no per-id dedupe', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic]);
      const m = msg(topic);
      await bus.publish(m);
      await bus.publish(m);
      const it = consumer(sub).it;
      const d = await next(it);
      expect(d.message.id).toBe(m.id);
      await d.ack();
      await expectRepublishOutcome(it, topic, m);
    });

    it('republishing a message in flight adds a copy only where the bus declares no per-id dedupe', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic]);
      const m = msg(topic);
      await bus.publish(m);
      const it = consumer(sub).it;
      const d = await next(it);
      await bus.publish(m);
      await expectRepublishOutcome(it, topic, m);
      await d.ack();
      await expectOnlyMarkerNext(it, topic);
    });

    it('republishing a message already acked adds a copy only where the bus declares no per-id dedupe', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic]);
      const m = msg(topic);
      await bus.publish(m);
      const it = consumer(sub).it;
      await (await next(it)).ack();
      await bus.publish(m);
      await expectRepublishOutcome(it, topic, m);
    });

    it('ack removes the message for good, even after its lease would have lapsed', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic], leaseMs);
      await bus.publish(msg(topic));
      const it = consumer(sub).it;
      await (await next(it)).ack();
      await letLeaseLapse();
      await expectOnlyMarkerNext(it, topic);
    });

    it('nack redelivers at once with deliveryCount incremented', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic]);
      const m = msg(topic);
      await bus.publish(m);
      const it = consumer(sub).it;
      const d1 = await next(it);
      await d1.nack();
      const d2 = await next(it);
      expect([d2.message.id, d2.deliveryCount]).toEqual([m.id, 2]);
      await d2.nack({ delayMs: 0 });
      const d3 = await next(it);
      expect([d3.message.id, d3.deliveryCount]).toEqual([m.id, 3]);
      await d3.ack();
    });

    it('nack with delayMs hides the message until the delay has passed', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic]);
      const [m1, m2] = [msg(topic), msg(topic)];
      await bus.publish(m1);
      const it = consumer(sub).it;
      const d1 = await next(it);
      const delayMs = Math.max(300, leaseMs);
      const nackedAt = Date.now();
      await d1.nack({ delayMs });
      await bus.publish(m2);
      // m1 is older but hidden, so the younger m2 comes first.
      const d2 = await next(it);
      expect(d2.message.id).toBe(m2.id);
      await d2.ack();
      const again = await next(it);
      expect(again.message.id).toBe(m1.id);
      expect(again.deliveryCount).toBe(2);
      expect(Date.now() - nackedAt).toBeGreaterThanOrEqual(delayMs - 20);
      await again.ack();
    });

    it('redelivers a message whose lease lapsed, with deliveryCount + 1 (crash recovery)', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic], leaseMs);
      const m = msg(topic);
      await bus.publish(m);
      const crashed = await next(consumer(sub).it);
      expect(crashed.deliveryCount).toBe(1);
      const survivor = await next(consumer(sub).it);
      expect([survivor.message.id, survivor.deliveryCount]).toEqual([m.id, 2]);
      await survivor.ack();
    });

    it('extend keeps the lease beyond leaseMs', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic], leaseMs);
      const m = msg(topic);
      await bus.publish(m);
      const d = await next(consumer(sub).it);
      let stolen = false;
      const other = consumer(sub)
        .it.next()
        .then((r) => {
          stolen = true;
          return r;
        });
      const until = Date.now() + leaseMs * 3;
      while (Date.now() < until) {
        await d.extend();
        await delay(leaseMs / 5);
      }
      expect(stolen).toBe(false);
      // Without extensions the lease lapses and the other consumer gets the message.
      const r = delivered(await within(other));
      expect(r.message.id).toBe(m.id);
      expect(r.deliveryCount).toBe(2);
      await r.ack();
    });

    it('deadLetter parks the message: it is not delivered again', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic], leaseMs);
      await bus.publish(msg(topic, 'not json'));
      const it = consumer(sub).it;
      await (await next(it)).deadLetter('malformed body');
      await letLeaseLapse();
      await expectOnlyMarkerNext(it, topic);
    });

    it('sendTo re-sends a dead-lettered message as ready with deliveryCount reset to 1', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic]);
      const m = msg(topic);
      await bus.publish(m);
      const it = consumer(sub).it;
      const d1 = await next(it);
      await d1.nack();
      await (await next(it)).deadLetter('gave up');
      await bus.sendTo(sub, m);
      const again = await next(it);
      expect([again.message.id, again.deliveryCount]).toEqual([m.id, 1]);
      await again.ack();
    });

    it('sendTo makes an acked message ready again', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic]);
      const m = msg(topic);
      await bus.publish(m);
      const it = consumer(sub).it;
      await (await next(it)).ack();
      await bus.sendTo(sub, m);
      const again = await next(it);
      expect([again.message.id, again.deliveryCount]).toEqual([m.id, 1]);
      await again.ack();
    });

    it('sendTo puts the message in that subscription only, whatever its topic', async () => {
      const [topic, otherTopic] = [uid('topic'), uid('topic')];
      const target = await subscription([topic]);
      const bystander = await subscription([otherTopic]);
      const m = msg(otherTopic);
      await bus.sendTo(target, m);
      const d = await next(consumer(target).it);
      expect([d.message, d.subscription]).toEqual([m, target]);
      await d.ack();
      await expectOnlyMarkerNext(consumer(bystander).it, otherTopic);
    });

    it('sendTo of a message in flight adds a copy only where the bus declares no per-id dedupe', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic]);
      const m = msg(topic);
      await bus.publish(m);
      const it = consumer(sub).it;
      const d = await next(it);
      await bus.sendTo(sub, m);
      await expectRepublishOutcome(it, topic, m);
      await d.ack();
      await expectOnlyMarkerNext(it, topic);
    });

    it('sendTo rejects with NotFoundError when the subscription does not exist', async () => {
      await expect(bus.sendTo(uid('missing'), msg(uid('topic')))).rejects.toBeInstanceOf(
        NotFoundError,
      );
    });

    it('consuming a subscription that does not exist rejects with NotFoundError', async () => {
      await expect(consumer(uid('missing')).it.next()).rejects.toBeInstanceOf(NotFoundError);
    });

    it('settling a delivery twice is a no-op', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic], leaseMs);
      await bus.publish(msg(topic));
      const it = consumer(sub).it;
      const d = await next(it);
      await d.ack();
      await d.ack();
      await d.nack();
      await d.extend();
      await d.deadLetter('too late');
      await letLeaseLapse();
      await expectOnlyMarkerNext(it, topic);
    });

    it('a settle by a consumer that lost its lease is a no-op and does not disturb the new owner', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic], leaseMs);
      const m = msg(topic);
      await bus.publish(m);
      const it = consumer(sub).it;
      const stale = await next(it);
      const owner = await next(consumer(sub).it); // after the stale lease lapsed
      expect([owner.message.id, owner.deliveryCount]).toEqual([m.id, 2]);
      await stale.nack();
      await stale.extend();
      await stale.deadLetter('stale');
      await stale.ack();
      // Still leased by the owner: the stale nack did not make it ready.
      await expectOnlyMarkerNext(it, topic);
      await owner.ack();
      await letLeaseLapse();
      // The owner's ack applied (the stale settles did not take ownership from it).
      await expectOnlyMarkerNext(it, topic);
    });

    it('competing consumers of one subscription each get different messages', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic]);
      const sent = Array.from({ length: 30 }, (_, n) => msg(topic, `{"n":${n}}`));
      const got: string[] = [];
      const perConsumer = [0, 0, 0];
      const run = async (index: number): Promise<void> => {
        const it = consumer(sub).it;
        while (got.length < sent.length) {
          const r = await it.next();
          if (r.done) return;
          got.push(r.value.message.id);
          perConsumer[index] = (perConsumer[index] ?? 0) + 1;
          await r.value.ack();
          await delay(1); // a little work lets the other consumers compete
        }
      };
      const runs = [0, 1, 2].map(run);
      for (const m of sent) await bus.publish(m);
      const deadline = Date.now() + deadlineMs;
      while (got.length < sent.length && Date.now() < deadline) await delay(10);
      for (const c of controllers) c.abort();
      await within(Promise.all(runs), deadlineMs, 'end of the consumers');
      expect([...got].sort()).toEqual(sent.map((m) => m.id).sort());
      expect(perConsumer.reduce((a, b) => a + b, 0)).toBe(sent.length);
    });

    it('wakes a waiting consumer promptly when a message is published', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic]);
      const pending = consumer(sub).it.next();
      await delay(50); // let the consumer start waiting
      const publishedAt = Date.now();
      await bus.publish(msg(topic));
      const d = delivered(await within(pending));
      expect(Date.now() - publishedAt).toBeLessThan(1_000);
      await d.ack();
    });

    it('aborting the signal ends a pending next() with done', async () => {
      const sub = await subscription([uid('topic')]);
      const { it, controller } = consumer(sub);
      const pending = it.next();
      controller.abort();
      expect(await within(pending, deadlineMs, 'end of iteration')).toEqual({
        done: true,
        value: undefined,
      });
      expect((await it.next()).done).toBe(true);
    });

    it('close ends pending iterations and is idempotent', async () => {
      const sub = await subscription([uid('topic')]);
      const pending = consumer(sub).it.next();
      await bus.close();
      await bus.close();
      expect((await within(pending, deadlineMs, 'end of iteration')).done).toBe(true);
    });

    it('depth counts the ready messages of every bound topic and those sent to the subscription', async () => {
      const [topic, other] = [uid('topic'), uid('topic')];
      const sub = await subscription([topic, other]);
      const bystander = await subscription([uid('topic')]);
      await expectDepth(sub, { ready: 0, inFlight: 0 });
      for (let n = 0; n < 3; n++) await bus.publish(msg(topic, `{"n":${n}}`));
      await bus.publish(msg(other));
      await bus.sendTo(sub, msg(topic)); // as a redrive does
      await expectDepth(sub, { ready: 5, inFlight: 0 });
      await expectDepth(bystander, { ready: 0, inFlight: 0 });
    });

    it('depth counts deliveries in flight until they are acked', async () => {
      // One topic: a consumer merging several may fetch ahead, and what it holds is in flight.
      const topic = uid('topic');
      const sub = await subscription([topic]);
      for (let n = 0; n < 5; n++) await bus.publish(msg(topic, `{"n":${n}}`));
      await expectDepth(sub, { ready: 5, inFlight: 0 });
      const it = consumer(sub).it;
      const taken = [await next(it), await next(it)];
      await expectDepth(sub, { ready: 3, inFlight: 2 });
      for (const d of taken) await d.ack();
      await expectDepth(sub, { ready: 3, inFlight: 0 });
      for (let n = 0; n < 3; n++) await (await next(it)).ack();
      await expectDepth(sub, { ready: 0, inFlight: 0 });
    });

    it('depth still counts a message nacked with a delay while it waits', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic]);
      await bus.publish(msg(topic));
      const d = await next(consumer(sub).it);
      await expectDepth(sub, { ready: 0, inFlight: 1 });
      await d.nack({ delayMs: 60_000 });
      // Ready on SQLite and RabbitMQ; JetStream keeps it ack-pending until redelivered.
      await waitFor('the delayed message to be counted once', async () => {
        const { ready, inFlight } = await bus.depth(sub);
        return ready + inFlight === 1 ? true : undefined;
      });
    });

    it('depth rejects with NotFoundError for a subscription that does not exist or was deleted', async () => {
      await expect(bus.depth(uid('missing'))).rejects.toBeInstanceOf(NotFoundError);
      const sub = await subscription([uid('topic')]);
      await bus.deleteSubscription(sub);
      await expect(bus.depth(sub)).rejects.toBeInstanceOf(NotFoundError);
    });

    it('delivers bodies as opaque text: non-JSON, empty and unicode bodies are unchanged', async () => {
      const topic = uid('topic');
      const sub = await subscription([topic]);
      const bodies = ['{not json', '', 'ünïcødé ✓ 🚀 \u0000 nul', ' '.repeat(3) + '\n\t'];
      const sent = bodies.map((b) => msg(topic, b));
      for (const m of sent) await bus.publish(m);
      const it = consumer(sub).it;
      for (const m of sent) {
        const d = await next(it);
        expect(d.message).toEqual(m);
        await d.ack();
      }
    });
  });
}

/** The delivery of an iterator result; fails the test when the iteration ended instead. */
function delivered(r: IteratorResult<Delivery, unknown>): Delivery {
  if (r.done) throw new Error('iteration ended unexpectedly');
  return r.value;
}
