/* eslint-disable @typescript-eslint/require-await --
 * better-sqlite3 is synchronous; the port's methods stay `async` so that every failure
 * surfaces as a rejected promise, never as a synchronous throw. */
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { checkSubscriptionSpec, checkedMessage } from '../checks.js';
import type { Database as Db } from 'better-sqlite3';
import { NotFoundError, UnavailableError, wrapDriverError } from '../../core/errors.js';
import type {
  BusCapabilities,
  BusMessage,
  ConsumeOptions,
  Delivery,
  EventBus,
  QueueDepth,
  SubscriptionSpec,
} from '../event-bus.js';
import {
  PRUNE_EVERY_MS,
  SCHEMA,
  TOMBSTONE_TTL_MS,
  prepareStatements,
  type ClaimedRow,
  type Statements,
} from './statements.js';
import { SubscriptionWaiters, type WakeReason } from './waiters.js';

/** Options of {@link SqliteEventBus}. */
export interface SqliteEventBusOptions {
  /** SQLite file (parent directories are created on start) or `:memory:`. */
  path: string;
  /**
   * How often a subscription with waiting consumers in this process looks for work that no
   * in-process wake-up announces: messages written by other processes, lapsed leases. A tick
   * reads `PRAGMA data_version` and claims (once per subscription, whatever the number of
   * waiting consumers) only if another connection committed or a row's visibility time
   * passed. It bounds the cross-process latency. Default 25.
   */
  pollIntervalMs?: number;
  logger?: { warn(obj: object, msg?: string): void };
}

const ADAPTER = 'sqlite event bus';
/**
 * A subscription whose last claim here found nothing. Until one of these changes, a claim
 * would find nothing either, so consumers wait without claiming: `known` messages were made
 * available through this instance since (publish, re-send, nack), the clock reached
 * `dueAt` (the next row becomes visible: a delayed nack, a lease that lapses), or another
 * connection committed (`dataVersion` moved: another process published or settled).
 */
interface IdleState {
  known: number;
  dueAt: number;
  dataVersion: number;
}

/**
 * The embedded event bus: SQLite in WAL mode with a busy timeout, so several processes on
 * one host can share one file as competing consumers.
 *
 * Waiting: consumers whose claim found nothing wait per subscription. A publish, re-send or
 * nack made through this instance wakes **one** waiting consumer of each subscription that
 * got a message (a publish learns them from `RETURNING subscription`). After a claim found
 * nothing, the instance also knows the subscription is empty (see {@link IdleState}): a
 * consumer asking for more then waits without claiming until something was announced, so
 * in-process work costs one claim per delivery. Work nobody announces (written by other
 * processes, a lapsed lease, a delayed nack) is found by one poll per subscription every
 * `pollIntervalMs`, which claims only when another connection committed (`PRAGMA
 * data_version`) or the next row's visibility time passed, and wakes the oldest waiter; a
 * poll that finds a message wakes the next waiter too (there may be more), until a claim
 * finds nothing.
 *
 * Settling (ack, nack, extend, deadLetter) is fenced by a lease token taken on each claim.
 * A settle after this delivery was already settled, or after its lease lapsed and another
 * consumer claimed the message, is a **no-op** (logged as a warning in the latter case):
 * it never throws and never disturbs the new owner. A delivery whose lease lapsed but that
 * nobody claimed yet still owns it, so a late ack is honoured (fewer duplicates).
 */
export class SqliteEventBus implements EventBus {
  /** One row per (subscription, id), kept as a tombstone after the ack; one host's file. */
  readonly capabilities: BusCapabilities = Object.freeze({
    dedupesById: true,
    sharedAcrossHosts: false,
  });
  private readonly path: string;
  private readonly logger: { warn(obj: object, msg?: string): void } | undefined;
  private db: Db | undefined;
  private stmts: Statements | undefined;
  private closed = false;
  private lastPruneAt = 0;
  /** Consumers waiting in this process, per subscription. */
  private readonly waiters: SubscriptionWaiters;
  /** What this instance knows about subscriptions whose last claim found nothing. */
  private readonly idle = new Map<string, IdleState>();

  constructor(options: SqliteEventBusOptions) {
    this.path = options.path;
    this.logger = options.logger;
    this.waiters = new SubscriptionWaiters(
      options.pollIntervalMs ?? 25,
      (subscription) => this.isIdle(subscription),
      () => this.closed,
    );
  }

  /** Opens the database and creates the schema. Idempotent. */
  async start(): Promise<void> {
    if (this.db) return;
    if (this.closed) throw new UnavailableError(`${ADAPTER}: closed`);
    let db: Db | undefined;
    try {
      if (this.path !== ':memory:' && !this.path.startsWith('file:')) {
        mkdirSync(dirname(this.path), { recursive: true });
      }
      db = new Database(this.path);
      // busy_timeout first: the WAL switch and schema creation may race other processes.
      db.pragma('busy_timeout = 5000');
      db.pragma('journal_mode = WAL');
      // synchronous stays FULL (the default): a published event must survive power loss,
      // since the outbox marks it published right after.
      db.exec(SCHEMA);
      this.stmts = prepareStatements(db);
      this.db = db;
    } catch (err) {
      db?.close();
      throw wrapDriverError(ADAPTER, 'start', err);
    }
  }

  /** Idempotent. Ends every open iteration and closes the database. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.waiters.stopAll();
    this.db?.close();
    this.db = undefined;
    this.stmts = undefined;
  }

  async ensureSubscription(spec: SubscriptionSpec): Promise<void> {
    checkSubscriptionSpec(spec);
    this.idle.delete(spec.name);
    this.run('ensureSubscription', (s, db) =>
      db
        .transaction(() => {
          s.upsertSubscription.run(spec.name, Math.round(spec.leaseMs));
          s.deleteBindings.run(spec.name);
          for (const topic of spec.topics) s.insertBinding.run(spec.name, topic);
        })
        .immediate(),
    );
  }

  async deleteSubscription(name: string): Promise<void> {
    this.idle.delete(name);
    this.run('deleteSubscription', (s, db) =>
      db
        .transaction(() => {
          s.deleteMessages.run(name);
          s.deleteBindings.run(name);
          s.deleteSubscription.run(name);
        })
        .immediate(),
    );
  }

  async publish(message: BusMessage): Promise<void> {
    const fields = checkedMessage(message);
    const now = Date.now();
    const subscriptions = this.run('publish', (s) => s.publish.all({ ...fields, now }) as string[]);
    for (const subscription of subscriptions) this.wakeOne(subscription);
    this.maybePrune(now);
  }

  async sendTo(subscription: string, message: BusMessage): Promise<void> {
    const fields = checkedMessage(message);
    const now = Date.now();
    const changes = this.run('sendTo', (s, db) =>
      db
        .transaction(() => {
          if (!s.subscriptionExists.get(subscription)) {
            throw new NotFoundError(`subscription "${subscription}" does not exist`);
          }
          return s.sendTo.run({ ...fields, sub: subscription, now }).changes;
        })
        .immediate(),
    );
    if (changes > 0) this.wakeOne(subscription);
  }

  /**
   * Counts the subscription's rows: `ready` holds ready rows (delayed ones included) and
   * leased rows whose lease lapsed (claimable again); `inFlight` holds live leases, of every
   * process sharing the file. Rejects with NotFoundError when the subscription does not exist.
   */
  async depth(subscription: string): Promise<QueueDepth> {
    return this.run('depth', (s, db) =>
      db.transaction(() => {
        if (!s.subscriptionExists.get(subscription)) {
          throw new NotFoundError(`subscription "${subscription}" does not exist`);
        }
        return s.depth.get({ sub: subscription, now: Date.now() }) as QueueDepth;
      })(),
    );
  }

  /**
   * Pull-based consumption. `next()` rejects with NotFoundError when the subscription does
   * not exist at that moment; transient database errors (e.g. a lock held past the busy
   * timeout) are logged and retried at the next poll instead of ending the iteration.
   */
  consume(subscription: string, options: ConsumeOptions): AsyncIterable<Delivery> {
    let finished = false;
    const done = (): IteratorResult<Delivery> => {
      finished = true;
      return { done: true, value: undefined };
    };
    const iterator: AsyncIterator<Delivery> = {
      next: async () => {
        if (this.closed || options.signal.aborted || finished) return done();
        const exists = this.run('consume', (s) => s.subscriptionExists.get(subscription));
        if (!exists) throw new NotFoundError(`subscription "${subscription}" does not exist`);
        let woken: WakeReason | undefined;
        for (;;) {
          if (this.closed || options.signal.aborted || finished) {
            // A wake-up meant for this consumer must not be lost with it.
            if (woken === 'wake' || woken === 'poll') this.waiters.wake(subscription, woken);
            return done();
          }
          if (this.isIdle(subscription)) {
            woken = await this.waiters.wait(subscription, options.signal);
            continue;
          }
          let delivery: Delivery | undefined;
          try {
            delivery = this.claim(subscription);
          } catch (err) {
            if (this.closed) return done();
            this.logger?.warn({ err, subscription }, `${ADAPTER}: claim failed; retrying`);
          }
          if (delivery) {
            // Polled work was announced to nobody: there may be more, so pass the poll on.
            if (woken === 'poll') this.waiters.wake(subscription, 'poll');
            return { done: false, value: delivery };
          }
          woken = await this.waiters.wait(subscription, options.signal);
        }
      },
      return: async () => done(),
    };
    return { [Symbol.asyncIterator]: () => iterator };
  }

  private claim(subscription: string): Delivery | undefined {
    const s = this.statements();
    const token = randomUUID();
    const idle = this.idle.get(subscription);
    let row: ClaimedRow | undefined;
    let dataVersion: number;
    try {
      // Read before the claim: a commit by another connection in between moves it again.
      dataVersion = s.dataVersion.get() as number;
      row = s.claim.get({ sub: subscription, token, now: Date.now() }) as ClaimedRow | undefined;
    } catch (err) {
      this.idle.delete(subscription);
      throw err;
    }
    if (!row) {
      const next = s.nextVisibleAt.get(subscription) as number | null;
      this.idle.set(subscription, { known: 0, dueAt: next ?? Infinity, dataVersion });
      return undefined;
    }
    if (idle) {
      if (this.isStale(idle)) {
        // Found work nobody announced here: there may be more, claim until it runs out.
        this.idle.delete(subscription);
      } else {
        idle.known = Math.max(0, idle.known - 1);
        // Should this lease lapse (a crashed consumer), the row becomes claimable again.
        idle.dueAt = Math.min(idle.dueAt, row.visible_at);
      }
    }
    return this.makeDelivery(subscription, row, token);
  }

  private makeDelivery(subscription: string, row: ClaimedRow, token: string): Delivery {
    let settled = false;
    // Applies one fenced update; `final` settles stop all further updates of this delivery.
    const settle = async (
      action: string,
      final: boolean,
      apply: (s: Statements, now: number) => number,
    ) => {
      if (settled) return;
      // Marked settled only once the update ran, so a settle that failed (e.g. busy) may be retried.
      const changes = this.run(action, (s) => apply(s, Date.now()));
      if (final || changes === 0) settled = true;
      if (changes === 0) {
        this.logger?.warn(
          { subscription, messageId: row.message_id, action },
          `${ADAPTER}: ${action} ignored: this delivery no longer owns the lease`,
        );
      }
    };
    const key = { seq: row.seq, token };
    return {
      message: { id: row.message_id, topic: row.topic, body: row.body },
      subscription,
      deliveryCount: row.delivery_count,
      ack: () => settle('ack', true, (s, now) => s.ack.run({ ...key, now }).changes),
      nack: async (options) => {
        const delay = Math.max(0, Math.round(options?.delayMs ?? 0));
        await settle('nack', true, (s, now) => s.nack.run({ ...key, now, delay }).changes);
        // Wake a local consumer when the message becomes visible, not only at the next poll.
        if (delay > 0) setTimeout(() => this.wakeOne(subscription), delay).unref();
        else this.wakeOne(subscription);
      },
      extend: () => settle('extend', false, (s, now) => s.extend.run({ ...key, now }).changes),
      deadLetter: (reason) =>
        settle('deadLetter', true, (s, now) => s.deadLetter.run({ ...key, now, reason }).changes),
    };
  }

  /** A message was made available on `subscription` through this instance: wake one consumer. */
  private wakeOne(subscription: string): void {
    const idle = this.idle.get(subscription);
    if (idle) idle.known++;
    this.waiters.wake(subscription, 'wake');
  }

  /** True while a claim on `subscription` would certainly find nothing (see {@link IdleState}). */
  private isIdle(subscription: string): boolean {
    const idle = this.idle.get(subscription);
    if (!idle) return false;
    try {
      return idle.known === 0 && !this.isStale(idle);
    } catch {
      return false; // the pragma failed (closed, busy): claim, which reports the error
    }
  }

  private isStale(idle: IdleState): boolean {
    return Date.now() >= idle.dueAt || this.statements().dataVersion.get() !== idle.dataVersion;
  }

  /** Deletes old acked tombstones at most once a minute; failures only cost disk space. */
  private maybePrune(now: number): void {
    if (now - this.lastPruneAt < PRUNE_EVERY_MS) return;
    this.lastPruneAt = now;
    try {
      this.statements().prune.run(now - TOMBSTONE_TTL_MS);
    } catch (err) {
      this.logger?.warn({ err }, `${ADAPTER}: pruning acked messages failed`);
    }
  }

  private statements(): Statements {
    if (!this.stmts)
      throw new UnavailableError(`${ADAPTER}: ${this.closed ? 'closed' : 'not started'}`);
    return this.stmts;
  }

  /** Runs driver calls, wrapping driver errors (IonErrors pass through unchanged). */
  private run<T>(action: string, fn: (s: Statements, db: Db) => T): T {
    const s = this.statements();
    try {
      return fn(s, this.db as Db);
    } catch (err) {
      throw wrapDriverError(ADAPTER, action, err);
    }
  }
}
