/* eslint-disable @typescript-eslint/require-await --
 * better-sqlite3 is synchronous; the port's methods stay `async` so that every failure
 * surfaces as a rejected promise, never as a synchronous throw. */
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Database as Db } from 'better-sqlite3';
import {
  NotFoundError,
  UnavailableError,
  ValidationError,
  wrapDriverError,
} from '../../core/errors.js';
import type {
  BusMessage,
  ConsumeOptions,
  Delivery,
  EventBus,
  SubscriptionSpec,
} from '../event-bus.js';

/** Options of {@link SqliteEventBus}. */
export interface SqliteEventBusOptions {
  /** SQLite file (parent directories are created on start) or `:memory:`. */
  path: string;
  /** How often a waiting consumer looks for work written by other processes. Default 25. */
  pollIntervalMs?: number;
  logger?: { warn(obj: object, msg?: string): void };
}

const ADAPTER = 'sqlite event bus';
/** Acked rows are kept as dedupe tombstones this long, then pruned. */
const TOMBSTONE_TTL_MS = 24 * 60 * 60 * 1000;
const PRUNE_EVERY_MS = 60 * 1000;

/*
 * One row per (subscription, message id). `state` is ready | leased | done | dead.
 * `visible_at` (epoch ms) means "deliverable from" for ready rows and "lease expires at" for
 * leased rows, so one index answers "what is available" for both, and FIFO is simply
 * ORDER BY visible_at, seq. `lease_token` changes on every claim: a settle applies only when
 * it still carries the token of the current claim, which is how stale consumers are fenced.
 */
const SCHEMA = `
CREATE TABLE IF NOT EXISTS bus_subscriptions (
  name TEXT PRIMARY KEY,
  lease_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS bus_bindings (
  subscription TEXT NOT NULL,
  topic TEXT NOT NULL,
  PRIMARY KEY (topic, subscription)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bus_messages (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  subscription TEXT NOT NULL,
  message_id TEXT NOT NULL,
  topic TEXT NOT NULL,
  body TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('ready', 'leased', 'done', 'dead')),
  visible_at INTEGER NOT NULL,
  delivery_count INTEGER NOT NULL DEFAULT 0,
  lease_token TEXT,
  dead_reason TEXT,
  updated_at INTEGER NOT NULL,
  UNIQUE (subscription, message_id)
);
CREATE INDEX IF NOT EXISTS bus_messages_available
  ON bus_messages (subscription, visible_at, seq) WHERE state IN ('ready', 'leased');
CREATE INDEX IF NOT EXISTS bus_messages_done
  ON bus_messages (updated_at) WHERE state = 'done';
`;

interface ClaimedRow {
  seq: number;
  message_id: string;
  topic: string;
  body: string;
  delivery_count: number;
}

type Statements = ReturnType<typeof prepareStatements>;

function prepareStatements(db: Db) {
  const fenced = (set: string) =>
    db.prepare(
      `UPDATE bus_messages SET ${set}, updated_at = @now WHERE seq = @seq AND lease_token = @token`,
    );
  return {
    upsertSubscription: db.prepare(
      'INSERT INTO bus_subscriptions (name, lease_ms) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET lease_ms = excluded.lease_ms',
    ),
    subscriptionExists: db.prepare('SELECT 1 FROM bus_subscriptions WHERE name = ?').pluck(),
    deleteBindings: db.prepare('DELETE FROM bus_bindings WHERE subscription = ?'),
    insertBinding: db.prepare(
      'INSERT OR IGNORE INTO bus_bindings (subscription, topic) VALUES (?, ?)',
    ),
    deleteMessages: db.prepare('DELETE FROM bus_messages WHERE subscription = ?'),
    deleteSubscription: db.prepare('DELETE FROM bus_subscriptions WHERE name = ?'),
    // One statement: fan-out and dedupe are atomic. An existing row (ready, leased, done
    // tombstone or dead) wins, so a relay republishing the same id is a no-op.
    publish: db.prepare(
      `INSERT INTO bus_messages (subscription, message_id, topic, body, state, visible_at, updated_at)
       SELECT subscription, @id, @topic, @body, 'ready', @now, @now FROM bus_bindings WHERE topic = @topic
       ON CONFLICT (subscription, message_id) DO NOTHING`,
    ),
    // Re-send: anything not in flight becomes ready again with a fresh count; a live lease
    // is left alone (its consumer will settle it).
    sendTo: db.prepare(
      `INSERT INTO bus_messages (subscription, message_id, topic, body, state, visible_at, updated_at)
       VALUES (@sub, @id, @topic, @body, 'ready', @now, @now)
       ON CONFLICT (subscription, message_id) DO UPDATE SET
         topic = excluded.topic, body = excluded.body, state = 'ready', visible_at = excluded.visible_at,
         delivery_count = 0, lease_token = NULL, dead_reason = NULL, updated_at = excluded.updated_at
       WHERE NOT (bus_messages.state = 'leased' AND bus_messages.visible_at > excluded.visible_at)`,
    ),
    // A write statement takes SQLite's write lock before it reads, so select-and-lease in
    // one UPDATE is atomic across connections and processes: two consumers never claim the
    // same row.
    claim: db.prepare(
      `UPDATE bus_messages SET state = 'leased', lease_token = @token, delivery_count = delivery_count + 1,
         visible_at = @now + (SELECT lease_ms FROM bus_subscriptions WHERE name = @sub), updated_at = @now
       WHERE seq = (SELECT seq FROM bus_messages
                    WHERE subscription = @sub AND state IN ('ready', 'leased') AND visible_at <= @now
                    ORDER BY visible_at, seq LIMIT 1)
       RETURNING seq, message_id, topic, body, delivery_count`,
    ),
    // Settles are fenced: they apply only while the row still carries this claim's token.
    ack: fenced("state = 'done', lease_token = NULL"),
    nack: fenced("state = 'ready', lease_token = NULL, visible_at = @now + @delay"),
    extend: fenced(
      'visible_at = @now + (SELECT lease_ms FROM bus_subscriptions WHERE name = bus_messages.subscription)',
    ),
    deadLetter: fenced("state = 'dead', lease_token = NULL, dead_reason = @reason"),
    prune: db.prepare("DELETE FROM bus_messages WHERE state = 'done' AND updated_at < ?"),
  };
}

/**
 * The embedded event bus: SQLite in WAL mode with a busy timeout, so several processes on
 * one host can share one file as competing consumers. Consumers in this process are woken
 * at once by publishes, re-sends and nacks made through this instance; work written by other
 * processes is found by polling every `pollIntervalMs`.
 *
 * Settling (ack, nack, extend, deadLetter) is fenced by a lease token taken on each claim.
 * A settle after this delivery was already settled, or after its lease lapsed and another
 * consumer claimed the message, is a **no-op** (logged as a warning in the latter case):
 * it never throws and never disturbs the new owner. A delivery whose lease lapsed but that
 * nobody claimed yet still owns it, so a late ack is honoured (fewer duplicates).
 */
export class SqliteEventBus implements EventBus {
  private readonly path: string;
  private readonly pollIntervalMs: number;
  private readonly logger: { warn(obj: object, msg?: string): void } | undefined;
  private db: Db | undefined;
  private stmts: Statements | undefined;
  private closed = false;
  private lastPruneAt = 0;
  /** Wake-up callbacks of consumers waiting in this process. */
  private readonly waiters = new Set<() => void>();

  constructor(options: SqliteEventBusOptions) {
    this.path = options.path;
    this.pollIntervalMs = options.pollIntervalMs ?? 25;
    this.logger = options.logger;
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
    this.wake();
    this.db?.close();
    this.db = undefined;
    this.stmts = undefined;
  }

  async ensureSubscription(spec: SubscriptionSpec): Promise<void> {
    if (!spec.name || !Number.isFinite(spec.leaseMs) || spec.leaseMs <= 0) {
      const issue = {
        path: spec.name ? 'leaseMs' : 'name',
        message: 'must be positive / non-empty',
      };
      throw new ValidationError(`invalid subscription: ${issue.path} ${issue.message}`, [issue]);
    }
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
    const fields = checked(message);
    const now = Date.now();
    const changes = this.run('publish', (s) => s.publish.run({ ...fields, now }).changes);
    if (changes > 0) this.wake();
    this.maybePrune(now);
  }

  async sendTo(subscription: string, message: BusMessage): Promise<void> {
    const fields = checked(message);
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
    if (changes > 0) this.wake();
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
        for (;;) {
          if (this.closed || options.signal.aborted || finished) return done();
          let delivery: Delivery | undefined;
          try {
            delivery = this.claim(subscription);
          } catch (err) {
            if (this.closed) return done();
            this.logger?.warn({ err, subscription }, `${ADAPTER}: claim failed; retrying`);
          }
          if (delivery) return { done: false, value: delivery };
          await this.waitForWork(options.signal);
        }
      },
      return: async () => done(),
    };
    return { [Symbol.asyncIterator]: () => iterator };
  }

  private claim(subscription: string): Delivery | undefined {
    const s = this.statements();
    const token = randomUUID();
    const row = s.claim.get({ sub: subscription, token, now: Date.now() }) as
      ClaimedRow | undefined;
    if (!row) return undefined;
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
        // Wake local consumers when the message becomes visible, not only at the next poll.
        if (delay > 0) setTimeout(() => this.wake(), delay).unref();
        else this.wake();
      },
      extend: () => settle('extend', false, (s, now) => s.extend.run({ ...key, now }).changes),
      deadLetter: (reason) =>
        settle('deadLetter', true, (s, now) => s.deadLetter.run({ ...key, now, reason }).changes),
    };
  }

  /** Resolves on an in-process wake-up, the poll interval, abort or close; never busy-loops. */
  private waitForWork(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        this.waiters.delete(finish);
        signal.removeEventListener('abort', finish);
        resolve();
      };
      const timer = setTimeout(finish, this.pollIntervalMs);
      this.waiters.add(finish);
      signal.addEventListener('abort', finish, { once: true });
    });
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
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

/** Checks the shape (callers may bypass types) and returns only the stored fields. */
function checked(message: BusMessage): { id: string; topic: string; body: string } {
  const { id, topic, body } = message as Partial<Record<keyof BusMessage, unknown>>;
  const issues = [
    ...(typeof id === 'string' && id
      ? []
      : [{ path: 'id', message: 'must be a non-empty string' }]),
    ...(typeof topic === 'string' && topic
      ? []
      : [{ path: 'topic', message: 'must be a non-empty string' }]),
    ...(typeof body === 'string' ? [] : [{ path: 'body', message: 'must be a string' }]),
  ];
  if (issues.length > 0) {
    const detail = issues.map((i) => `${i.path} ${i.message}`).join(', ');
    throw new ValidationError(`invalid bus message: ${detail}`, issues);
  }
  return { id: message.id, topic: message.topic, body: message.body };
}
