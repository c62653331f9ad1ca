import type { Database } from 'better-sqlite3';

/**
 * Versioned schema of the SQLite document store. Migrations are applied in order on
 * `start()`, each recorded in `schema_migrations`; a migration once released is never edited,
 * a change is a new entry at the end of {@link MIGRATIONS}.
 */
export interface Migration {
  version: number;
  description: string;
  sql: string;
}

/** Every migration, oldest first. Versions are consecutive from 1. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    description: 'modules, events, jobs, attempts, insights, outbox, dead letters',
    sql: `
      CREATE TABLE modules (
        name         TEXT PRIMARY KEY,
        version      INTEGER NOT NULL,
        subscribes   TEXT NOT NULL,           -- JSON string[]
        publishes    TEXT NOT NULL,           -- JSON string[]
        executor     TEXT NOT NULL,
        command      TEXT NOT NULL,           -- JSON string[]
        cwd          TEXT,
        retries      INTEGER NOT NULL,
        timeout_ms   INTEGER NOT NULL,
        concurrency  INTEGER NOT NULL,
        env          TEXT NOT NULL,           -- JSON object
        spec_json    TEXT NOT NULL,           -- canonical spec, compared on upsert
        paused       INTEGER NOT NULL DEFAULT 0,
        deleted      INTEGER NOT NULL DEFAULT 0,
        created_at   TEXT NOT NULL,
        updated_at   TEXT NOT NULL
      );

      CREATE TABLE module_versions (
        name        TEXT NOT NULL,
        version     INTEGER NOT NULL,
        spec_json   TEXT NOT NULL,
        created_at  TEXT NOT NULL,
        PRIMARY KEY (name, version)
      );

      -- A single row: the revision dispatchers poll to notice module changes cheaply.
      CREATE TABLE modules_revision (
        id        INTEGER PRIMARY KEY CHECK (id = 1),
        revision  INTEGER NOT NULL
      );
      INSERT INTO modules_revision (id, revision) VALUES (1, 0);

      CREATE TABLE events (
        event_id         TEXT PRIMARY KEY,
        type             TEXT NOT NULL,
        correlation_id   TEXT NOT NULL,
        parent_event_id  TEXT,
        source           TEXT NOT NULL,
        source_job_id    TEXT,
        data             TEXT NOT NULL,       -- JSON KeyValue[], order kept
        files            TEXT NOT NULL,       -- JSON FileRef[]
        created_at       TEXT NOT NULL
      );
      CREATE INDEX events_correlation ON events (correlation_id);

      CREATE TABLE jobs (
        job_id                 TEXT PRIMARY KEY,
        module                 TEXT NOT NULL,
        module_version         INTEGER NOT NULL,
        event_id               TEXT NOT NULL REFERENCES events (event_id),
        correlation_id         TEXT NOT NULL,
        state                  TEXT NOT NULL,
        attempts               INTEGER NOT NULL,
        -- Attempts counted against the retry budget since the last redrive.
        failures_since_redrive INTEGER NOT NULL DEFAULT 0,
        created_at             TEXT NOT NULL,
        updated_at             TEXT NOT NULL,
        finished_at            TEXT,
        last_error             TEXT
      );
      CREATE INDEX jobs_module_state ON jobs (module, state);
      CREATE INDEX jobs_correlation ON jobs (correlation_id);
      CREATE INDEX jobs_event ON jobs (event_id);
      CREATE INDEX jobs_updated ON jobs (updated_at);

      CREATE TABLE attempts (
        job_id             TEXT NOT NULL REFERENCES jobs (job_id),
        attempt            INTEGER NOT NULL,
        module_version     INTEGER NOT NULL,
        worker_id          TEXT NOT NULL,
        outcome            TEXT NOT NULL,
        started_at         TEXT NOT NULL,
        finished_at        TEXT,
        duration_ms        INTEGER,
        exit_code          INTEGER,
        error_code         TEXT,
        error_kind         TEXT,
        error              TEXT,
        log_tail           TEXT NOT NULL DEFAULT '',
        log_blob           TEXT,
        counts_as_failure  INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (job_id, attempt)
      );

      CREATE TABLE insights (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id          TEXT NOT NULL REFERENCES jobs (job_id),
        module          TEXT NOT NULL,
        event_id        TEXT NOT NULL,
        correlation_id  TEXT NOT NULL,
        key             TEXT NOT NULL,
        value           TEXT NOT NULL,
        created_at      TEXT NOT NULL
      );
      CREATE INDEX insights_key_value ON insights (key, value);
      CREATE INDEX insights_correlation ON insights (correlation_id);
      CREATE INDEX insights_job ON insights (job_id);

      CREATE TABLE outbox (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id      TEXT NOT NULL REFERENCES events (event_id),
        subscription  TEXT,                   -- null: publish by topic
        created_at    TEXT NOT NULL,
        published_at  TEXT
      );
      CREATE INDEX outbox_pending ON outbox (published_at, id);

      CREATE TABLE dead_letters (
        id          TEXT PRIMARY KEY,
        job_id      TEXT NOT NULL,            -- no foreign key: malformed messages have no job
        module      TEXT NOT NULL,
        event_id    TEXT,
        reason      TEXT NOT NULL,
        attempts    INTEGER NOT NULL,
        log_tail    TEXT NOT NULL,
        created_at  TEXT NOT NULL
      );
      CREATE INDEX dead_letters_module ON dead_letters (module, created_at);
    `,
  },
  {
    version: 2,
    description: "a job's output files (everything it left in out/data)",
    sql: `ALTER TABLE jobs ADD COLUMN outputs_json TEXT NOT NULL DEFAULT '[]';`,
  },
  {
    version: 3,
    description: 'attempt leases: a duplicate delivery does not take over a live attempt',
    sql: `ALTER TABLE attempts ADD COLUMN lease_until TEXT;`,
  },
  {
    version: 4,
    description: 'API tokens, stored as sha256 hashes only',
    sql: `
      CREATE TABLE api_tokens (
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL,
        scopes        TEXT NOT NULL,          -- JSON string[]
        token_hash    TEXT NOT NULL UNIQUE,   -- hex sha256 of the value; the value is never stored
        created_at    TEXT NOT NULL,
        last_used_at  TEXT,
        revoked_at    TEXT
      );
    `,
  },
  {
    version: 5,
    description: 'list events newest first without scanning the table',
    sql: `CREATE INDEX events_created ON events (created_at DESC, event_id DESC);`,
  },
  {
    version: 6,
    description: 'replays, job cancel and live log progress',
    sql: `
      ALTER TABLE jobs ADD COLUMN replay_id TEXT;
      ALTER TABLE jobs ADD COLUMN replay_of TEXT;
      ALTER TABLE jobs ADD COLUMN pinned_version INTEGER;
      ALTER TABLE jobs ADD COLUMN cancel_requested_at TEXT;
      CREATE INDEX jobs_replay ON jobs (replay_id, state);
      ALTER TABLE attempts ADD COLUMN log_size INTEGER;
      -- The job an outbox row asks to run when it is not the ordinary one (a replayed job).
      ALTER TABLE outbox ADD COLUMN job_id TEXT;
      CREATE TABLE replays (
        replay_id       TEXT PRIMARY KEY,
        module          TEXT NOT NULL,
        module_version  INTEGER,              -- null: the version current when each job runs
        selector        TEXT NOT NULL,        -- JSON ReplaySelector
        jobs            INTEGER NOT NULL DEFAULT 0,
        created_at      TEXT NOT NULL
      );
      CREATE INDEX replays_created ON replays (created_at DESC, replay_id DESC);
    `,
  },
  {
    version: 7,
    description: 'settlements: a trace whose jobs have all ended, raised as ion.trace.settled',
    sql: `
      CREATE TABLE settlements (
        correlation_id  TEXT PRIMARY KEY,     -- once per trace, whatever ends its jobs again
        root_event_id   TEXT NOT NULL,
        settled_at      TEXT NOT NULL,
        jobs            TEXT NOT NULL,        -- JSON JobStateCounts when it settled
        -- Set once handled: the ion.trace.settled event stored, or none needed (no subscriber).
        done            INTEGER NOT NULL DEFAULT 0,
        event_id        TEXT                  -- the ion.trace.settled event, when one was raised
      );
      CREATE INDEX settlements_open ON settlements (settled_at) WHERE done = 0;
      -- The settle check looks for a trace's jobs that have not ended, after every job's end.
      CREATE INDEX jobs_correlation_state ON jobs (correlation_id, state);
    `,
  },
  {
    version: 8,
    description: 'settlements: claimed by one relay at a time',
    sql: `
      -- The relay holding an open settlement, and until when (claimSettlements); null:
      -- never claimed.
      ALTER TABLE settlements ADD COLUMN claimed_by TEXT;
      ALTER TABLE settlements ADD COLUMN claimed_until TEXT;
    `,
  },
];

/**
 * Applies the migrations not yet recorded, in one immediate transaction, so two processes
 * starting on the same file at once apply each migration exactly once.
 */
export function migrate(db: Database, nowIso: string): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  TEXT NOT NULL
  )`);
  const apply = db.transaction(() => {
    const rows = db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[];
    const applied = new Set(rows.map((r) => r.version));
    const record = db.prepare(
      'INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)',
    );
    for (const m of MIGRATIONS) {
      if (applied.has(m.version)) continue;
      db.exec(m.sql);
      record.run(m.version, m.description, nowIso);
    }
  });
  apply.immediate();
}
