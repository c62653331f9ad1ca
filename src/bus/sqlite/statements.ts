import type { Database as Db } from 'better-sqlite3';

/**
 * The SQLite event bus's schema and prepared statements: what each bus operation runs, and
 * why each statement is atomic on its own. Internal to the adapter.
 */

/** Acked rows are kept as dedupe tombstones this long, then pruned. */
export const TOMBSTONE_TTL_MS = 24 * 60 * 60 * 1000;
export const PRUNE_EVERY_MS = 60 * 1000;

/*
 * One row per (subscription, message id). `state` is ready | leased | done | dead.
 * `visible_at` (epoch ms) means "deliverable from" for ready rows and "lease expires at" for
 * leased rows, so one index answers "what is available" for both, and FIFO is simply
 * ORDER BY visible_at, seq. `lease_token` changes on every claim: a settle applies only when
 * it still carries the token of the current claim, which is how stale consumers are fenced.
 */
export const SCHEMA = `
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

export interface ClaimedRow {
  seq: number;
  message_id: string;
  topic: string;
  body: string;
  delivery_count: number;
  /** Lease expiry of the claim. */
  visible_at: number;
}

export type Statements = ReturnType<typeof prepareStatements>;

/** Prepares every statement once per open database; its type is what each prepare infers. */
export function prepareStatements(db: Db) {
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
    // tombstone or dead) wins, so a relay republishing the same id is a no-op. RETURNING
    // names the subscriptions that got a new copy (skipped conflicts return nothing), so only
    // their consumers are woken.
    publish: db
      .prepare(
        `INSERT INTO bus_messages (subscription, message_id, topic, body, state, visible_at, updated_at)
         SELECT subscription, @id, @topic, @body, 'ready', @now, @now FROM bus_bindings WHERE topic = @topic
         ON CONFLICT (subscription, message_id) DO NOTHING
         RETURNING subscription`,
      )
      .pluck(),
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
       RETURNING seq, message_id, topic, body, delivery_count, visible_at`,
    ),
    // When the next row of a subscription becomes claimable (null: it holds none). Read
    // only (no write lock), answered by the bus_messages_available index.
    nextVisibleAt: db
      .prepare(
        `SELECT min(visible_at) FROM bus_messages
         WHERE subscription = ? AND state IN ('ready', 'leased')`,
      )
      .pluck(),
    // A lease that lapsed is claimable again, so it counts as ready; a delayed nack is a
    // ready row whose visible_at lies ahead, also ready. Answered by bus_messages_available.
    depth: db.prepare(
      `SELECT coalesce(sum(state = 'ready' OR visible_at <= @now), 0) AS ready,
              coalesce(sum(state = 'leased' AND visible_at > @now), 0) AS inFlight
       FROM bus_messages WHERE subscription = @sub AND state IN ('ready', 'leased')`,
    ),
    // Changes whenever another connection (another process, or another instance) committed.
    dataVersion: db.prepare('PRAGMA data_version').pluck(),
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
