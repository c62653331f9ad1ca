import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Delivery } from '../../src/bus/event-bus.js';
import { SqliteEventBus } from '../../src/bus/sqlite/sqlite-event-bus.js';
import { IonError, ValidationError } from '../../src/core/errors.js';
import { eventBusConformance } from './event-bus.suite.js';

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'ion-sqlite-bus-'));
}

eventBusConformance(
  'SqliteEventBus',
  async () => {
    const dir = await tempDir();
    // A nested path also checks that start() creates parent directories.
    const bus = new SqliteEventBus({ path: join(dir, 'nested', 'bus.db') });
    await bus.start();
    return {
      bus,
      cleanup: async () => {
        await bus.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  },
  { leaseMsForTests: 400 },
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

describe('SqliteEventBus: two instances on one file (as two processes)', () => {
  let dir: string;
  let a: SqliteEventBus;
  let b: SqliteEventBus;
  const controller = new AbortController();
  const signal = controller.signal;

  beforeEach(async () => {
    dir = await tempDir();
    const path = join(dir, 'bus.db');
    a = new SqliteEventBus({ path });
    b = new SqliteEventBus({ path, pollIntervalMs: 10 });
    await a.start();
    await b.start();
  });

  afterEach(async () => {
    await a.close();
    await b.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('uses WAL mode', () => {
    const db = new Database(join(dir, 'bus.db'), { readonly: true });
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    } finally {
      db.close();
    }
  });

  it('are competing consumers: each message is delivered to exactly one of them', async () => {
    const topic = `topic-${randomUUID()}`;
    const sub = `sub-${randomUUID()}`;
    await a.ensureSubscription({ name: sub, topics: [topic], leaseMs: 60_000 });
    await b.ensureSubscription({ name: sub, topics: [topic], leaseMs: 60_000 });
    const ids = Array.from({ length: 40 }, () => `evt-${randomUUID()}`);
    const got: { bus: string; id: string }[] = [];
    const ac = new AbortController();
    const run = async (busName: string, bus: SqliteEventBus): Promise<void> => {
      for await (const d of bus.consume(sub, { signal: ac.signal })) {
        got.push({ bus: busName, id: d.message.id });
        await d.ack();
        await delay(2); // a little work, so both instances get a share
        if (got.length >= ids.length) break;
      }
    };
    const runs = [run('a', a), run('a', a), run('b', b), run('b', b)];
    // Publish through both instances: each copy is stored once whichever instance wrote it.
    for (const [i, id] of ids.entries()) await (i % 2 ? a : b).publish({ id, topic, body: '{}' });
    const deadline = Date.now() + 10_000;
    while (got.length < ids.length && Date.now() < deadline) await delay(10);
    ac.abort();
    await within(Promise.all(runs));
    expect(got.map((g) => g.id).sort()).toEqual([...ids].sort());
    expect(new Set(got.map((g) => g.id)).size).toBe(ids.length);
  });

  it('a message held by one instance is invisible to the other, which gets the next one', async () => {
    const topic = `topic-${randomUUID()}`;
    const sub = `sub-${randomUUID()}`;
    await a.ensureSubscription({ name: sub, topics: [topic], leaseMs: 60_000 });
    await a.publish({ id: 'm1', topic, body: '1' });
    await a.publish({ id: 'm2', topic, body: '2' });
    const held = await nextOf(a.consume(sub, { signal })[Symbol.asyncIterator]());
    const other = await nextOf(b.consume(sub, { signal })[Symbol.asyncIterator]());
    expect([held.message.id, other.message.id]).toEqual(['m1', 'm2']);
    await held.ack();
    await other.ack();
  });

  it('a consumer of one instance sees a publish made through the other (by polling)', async () => {
    const topic = `topic-${randomUUID()}`;
    const sub = `sub-${randomUUID()}`;
    await a.ensureSubscription({ name: sub, topics: [topic], leaseMs: 60_000 });
    const pending = b.consume(sub, { signal })[Symbol.asyncIterator]().next();
    await a.publish({ id: 'x', topic, body: 'x' });
    const r = await within(pending);
    expect(delivered(r).message.id).toBe('x');
  });

  it('a lease lapsed in one instance is recovered by the other', async () => {
    const topic = `topic-${randomUUID()}`;
    const sub = `sub-${randomUUID()}`;
    await a.ensureSubscription({ name: sub, topics: [topic], leaseMs: 200 });
    await a.publish({ id: 'job', topic, body: '{}' });
    const crashed = await nextOf(a.consume(sub, { signal })[Symbol.asyncIterator]());
    await a.close(); // the "process" dies holding the lease
    const recovered = await nextOf(b.consume(sub, { signal })[Symbol.asyncIterator]());
    expect([recovered.message.id, recovered.deliveryCount]).toEqual([crashed.message.id, 2]);
    await recovered.ack();
  });
});

describe('SqliteEventBus: malformed and oversized input', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await tempDir();
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('rejects an invalid message with ValidationError and keeps working', async () => {
    const bus = new SqliteEventBus({ path: join(dir, 'bus.db') });
    await bus.start();
    try {
      const topic = `topic-${randomUUID()}`;
      const sub = `sub-${randomUUID()}`;
      await bus.ensureSubscription({ name: sub, topics: [topic], leaseMs: 60_000 });
      const bad = [
        { id: '', topic, body: '{}' },
        { id: 'x', topic: '', body: '{}' },
        { id: 'y', topic, body: { not: 'a string' } },
        { id: 'z', topic, body: null },
      ];
      for (const m of bad) {
        await expect(bus.publish(m as never)).rejects.toBeInstanceOf(ValidationError);
        await expect(bus.sendTo(sub, m as never)).rejects.toBeInstanceOf(ValidationError);
      }
      await expect(
        bus.ensureSubscription({ name: sub, topics: [], leaseMs: 0 }),
      ).rejects.toBeInstanceOf(ValidationError);
      await bus.publish({ id: 'ok', topic, body: '{}' });
      const ac = new AbortController();
      const d = await nextOf(bus.consume(sub, { signal: ac.signal })[Symbol.asyncIterator]());
      expect(d.message.id).toBe('ok');
      ac.abort();
    } finally {
      await bus.close();
    }
  });

  it('round-trips an oversized (16 MiB) body unchanged', async () => {
    const bus = new SqliteEventBus({ path: join(dir, 'bus.db') });
    await bus.start();
    try {
      const topic = `topic-${randomUUID()}`;
      const sub = `sub-${randomUUID()}`;
      await bus.ensureSubscription({ name: sub, topics: [topic], leaseMs: 60_000 });
      const body = 'x'.repeat(16 * 1024 * 1024 - 3) + 'end';
      await bus.publish({ id: 'big', topic, body });
      const d = await nextOf(
        bus.consume(sub, { signal: new AbortController().signal })[Symbol.asyncIterator](),
      );
      expect(d.message.body.length).toBe(body.length);
      expect(d.message.body === body).toBe(true);
      await d.ack();
    } finally {
      await bus.close();
    }
  });

  it('start on a file that is not a SQLite database rejects with an IonError instead of crashing', async () => {
    const path = join(dir, 'garbage.db');
    await writeFile(path, 'this is not a database, just text '.repeat(200));
    const bus = new SqliteEventBus({ path });
    const err: unknown = await bus.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(IonError);
    expect((err as IonError).code).toBe('unavailable');
    await bus.close();
  });

  it('works on :memory: and refuses calls after close', async () => {
    const bus = new SqliteEventBus({ path: ':memory:' });
    await bus.start();
    await bus.ensureSubscription({ name: 's', topics: ['t'], leaseMs: 1_000 });
    await bus.publish({ id: '1', topic: 't', body: 'b' });
    const d = await nextOf(
      bus.consume('s', { signal: new AbortController().signal })[Symbol.asyncIterator](),
    );
    expect(d.message.body).toBe('b');
    await bus.close();
    await expect(bus.publish({ id: '2', topic: 't', body: 'b' })).rejects.toMatchObject({
      code: 'unavailable',
    });
    const iterable = bus.consume('s', { signal: new AbortController().signal });
    const after = await iterable[Symbol.asyncIterator]().next();
    expect(after.done).toBe(true);
  });
});

describe('SqliteEventBus: in-process wake-ups', () => {
  it('wakes a waiting consumer of the same instance at once, without waiting for the poll', async () => {
    // A poll interval far beyond the deadline: only the in-process wake-up can deliver in time.
    const bus = new SqliteEventBus({ path: ':memory:', pollIntervalMs: 60_000 });
    await bus.start();
    const ac = new AbortController();
    try {
      await bus.ensureSubscription({ name: 's', topics: ['t'], leaseMs: 60_000 });
      const it = bus.consume('s', { signal: ac.signal })[Symbol.asyncIterator]();
      const first = it.next();
      await delay(20); // let the consumer go to sleep
      await bus.publish({ id: '1', topic: 't', body: '{}' });
      const d1 = delivered(await within(first, 1_000));
      const second = it.next();
      await delay(20);
      await d1.nack();
      const d2 = delivered(await within(second, 1_000));
      expect([d2.message.id, d2.deliveryCount]).toEqual(['1', 2]);
      const third = it.next();
      await delay(20);
      await d2.ack();
      await bus.sendTo('s', { id: '1', topic: 't', body: '{}' });
      expect(delivered(await within(third, 1_000)).deliveryCount).toBe(1);
    } finally {
      ac.abort();
      await bus.close();
    }
  });
});

describe('SqliteEventBus: in-process wake-ups cost about one claim per delivery', () => {
  /** Counts the bus's claims per subscription (its private claim helper, wrapped from outside). */
  function countClaims(bus: SqliteEventBus): Map<string, number> {
    const counts = new Map<string, number>();
    const holder = bus as unknown as Record<string, (sub: string) => unknown>;
    const original = holder.claim!.bind(bus);
    holder.claim = (sub: string) => {
      counts.set(sub, (counts.get(sub) ?? 0) + 1);
      return original(sub);
    };
    return counts;
  }

  it('wakes one consumer of the subscription that got the message, none of the others', async () => {
    // No poll within the test: every claim comes from a wake-up or a consumer asking.
    const bus = new SqliteEventBus({ path: ':memory:', pollIntervalMs: 60_000 });
    await bus.start();
    const ac = new AbortController();
    try {
      await bus.ensureSubscription({ name: 'busy', topics: ['t1'], leaseMs: 60_000 });
      await bus.ensureSubscription({ name: 'idle', topics: ['t2'], leaseMs: 60_000 });
      const claims = countClaims(bus);
      const got: string[] = [];
      const run = async (sub: string): Promise<void> => {
        for await (const d of bus.consume(sub, { signal: ac.signal })) {
          got.push(d.message.id);
          await d.ack();
        }
      };
      const runs = [...Array.from({ length: 4 }, () => run('busy')), run('idle'), run('idle')];
      await delay(20); // every consumer claims once, finds nothing and waits
      const waitingClaims = { busy: claims.get('busy'), idle: claims.get('idle') };
      expect(waitingClaims.busy).toBeLessThanOrEqual(4);
      expect(waitingClaims.idle).toBeLessThanOrEqual(2);
      const n = 40;
      for (let i = 0; i < n; i++) {
        await bus.publish({ id: `m${i}`, topic: 't1', body: '{}' });
        const until = Date.now() + 1_000;
        while (got.length <= i && Date.now() < until) await delay(1);
      }
      expect(got).toHaveLength(n);
      // The idle subscription's consumers were never woken.
      expect(claims.get('idle')).toBe(waitingClaims.idle);
      // One successful claim per message: a consumer asking for more after its ack waits
      // without claiming, since the bus knows the queue is empty again.
      const busyClaims = (claims.get('busy') ?? 0) - (waitingClaims.busy ?? 0);
      expect(busyClaims).toBeGreaterThanOrEqual(n);
      expect(busyClaims).toBeLessThanOrEqual(n + 2);
      ac.abort();
      await within(Promise.all(runs));
    } finally {
      ac.abort();
      await bus.close();
    }
  });

  it('a burst is drained with about one claim per delivery', async () => {
    const bus = new SqliteEventBus({ path: ':memory:', pollIntervalMs: 60_000 });
    await bus.start();
    const ac = new AbortController();
    try {
      await bus.ensureSubscription({ name: 's', topics: ['t'], leaseMs: 60_000 });
      const claims = countClaims(bus);
      const n = 100;
      let got = 0;
      const run = async (): Promise<void> => {
        for await (const d of bus.consume('s', { signal: ac.signal })) {
          got++;
          await delay(1); // the "job"
          await d.ack();
        }
      };
      const runs = Array.from({ length: 4 }, run);
      await delay(20);
      for (let i = 0; i < n; i++) await bus.publish({ id: `m${i}`, topic: 't', body: '{}' });
      const until = Date.now() + 5_000;
      while (got < n && Date.now() < until) await delay(5);
      expect(got).toBe(n);
      // n successful claims; the consumers' first claims and the final empty ones are few.
      expect(claims.get('s')).toBeLessThanOrEqual(n + 8);
      ac.abort();
      await within(Promise.all(runs));
    } finally {
      ac.abort();
      await bus.close();
    }
  });

  it('still finds work written by another instance (the poll), for every waiting consumer', async () => {
    const dir = await tempDir();
    const path = join(dir, 'bus.db');
    const local = new SqliteEventBus({ path, pollIntervalMs: 10 });
    const remote = new SqliteEventBus({ path });
    await local.start();
    await remote.start();
    const ac = new AbortController();
    try {
      await local.ensureSubscription({ name: 's', topics: ['t'], leaseMs: 60_000 });
      const held: Delivery[] = [];
      const pending = Array.from({ length: 3 }, () =>
        local.consume('s', { signal: ac.signal })[Symbol.asyncIterator]().next(),
      );
      await delay(30);
      // Three messages at once from "another process": all three waiters must get one, not
      // only the one the poll tick woke.
      for (let i = 0; i < 3; i++) await remote.publish({ id: `r${i}`, topic: 't', body: '{}' });
      for (const p of pending) held.push(delivered(await within(p, 2_000)));
      expect(held.map((d) => d.message.id).sort()).toEqual(['r0', 'r1', 'r2']);
      for (const d of held) await d.ack();
    } finally {
      ac.abort();
      await local.close();
      await remote.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
