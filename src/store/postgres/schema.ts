import type { PoolClient } from 'pg';
import { ValidationError } from '../../core/errors.js';

/**
 * Versioned schema of the Postgres document store, the counterpart of the SQLite adapter's
 * `schema.ts`. Migrations run on `start()` inside one transaction that holds a transaction-level
 * advisory lock keyed on the schema name, so several servers starting at once apply each
 * migration exactly once; each is recorded in `<schema>.schema_migrations`. A migration once
 * released is never edited: a change is a new entry at the end of {@link MIGRATIONS}.
 *
 * Migration SQL is written unqualified: the migrating transaction sets `search_path` to the
 * store's schema only (`SET LOCAL`), so the same text serves any schema name.
 *
 * Choices that differ from SQLite, and why:
 * - Timestamps are `text COLLATE "C"`: callers' ISO-8601 strings round-trip byte for byte, and
 *   ISO-8601 UTC strings sort chronologically under the byte-wise "C" collation whatever the
 *   database's default collation is.
 * - JSON is `jsonb` (arrays keep their order, so KeyValue order is kept); the canonical module
 *   spec stays `text` because upserts compare it as an exact string.
 * - Postgres has no rowid: `seq` identity columns break ties in creation order, as SQLite's
 *   rowid does, and identity ids replace AUTOINCREMENT.
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
        name         text PRIMARY KEY,
        version      integer NOT NULL,
        subscribes   jsonb NOT NULL,             -- string[]
        publishes    jsonb NOT NULL,             -- string[]
        executor     text NOT NULL,
        command      jsonb NOT NULL,             -- string[]
        cwd          text,
        retries      integer NOT NULL,
        timeout_ms   bigint NOT NULL,
        concurrency  integer NOT NULL,
        env          jsonb NOT NULL,             -- object
        spec_json    text NOT NULL,              -- canonical spec, compared on upsert
        paused       boolean NOT NULL DEFAULT false,
        deleted      boolean NOT NULL DEFAULT false,
        created_at   text COLLATE "C" NOT NULL,
        updated_at   text COLLATE "C" NOT NULL
      );

      CREATE TABLE module_versions (
        name        text NOT NULL,
        version     integer NOT NULL,
        spec_json   text NOT NULL,
        created_at  text COLLATE "C" NOT NULL,
        PRIMARY KEY (name, version)
      );

      -- A single row: the revision dispatchers poll to notice module changes cheaply.
      CREATE TABLE modules_revision (
        id        integer PRIMARY KEY CHECK (id = 1),
        revision  bigint NOT NULL
      );
      INSERT INTO modules_revision (id, revision) VALUES (1, 0);

      CREATE TABLE events (
        event_id         text PRIMARY KEY,
        seq              bigint GENERATED ALWAYS AS IDENTITY,
        type             text NOT NULL,
        correlation_id   text NOT NULL,
        parent_event_id  text,
        source           text NOT NULL,
        source_job_id    text,
        data             jsonb NOT NULL,         -- KeyValue[], order kept
        files            jsonb NOT NULL,         -- FileRef[]
        created_at       text COLLATE "C" NOT NULL
      );
      CREATE INDEX events_correlation ON events (correlation_id, created_at, seq);

      CREATE TABLE jobs (
        job_id                 text PRIMARY KEY,
        seq                    bigint GENERATED ALWAYS AS IDENTITY,
        module                 text NOT NULL,
        module_version         integer NOT NULL,
        event_id               text NOT NULL REFERENCES events (event_id),
        correlation_id         text NOT NULL,
        state                  text NOT NULL,
        attempts               integer NOT NULL,
        -- Attempts counted against the retry budget since the last redrive.
        failures_since_redrive integer NOT NULL DEFAULT 0,
        created_at             text COLLATE "C" NOT NULL,
        updated_at             text COLLATE "C" NOT NULL,
        finished_at            text COLLATE "C",
        last_error             text
      );
      CREATE INDEX jobs_module_state ON jobs (module, state, updated_at DESC, seq DESC);
      CREATE INDEX jobs_correlation ON jobs (correlation_id, created_at, seq);
      CREATE INDEX jobs_event ON jobs (event_id);
      CREATE INDEX jobs_updated ON jobs (updated_at DESC, seq DESC);

      CREATE TABLE attempts (
        job_id             text NOT NULL REFERENCES jobs (job_id),
        attempt            integer NOT NULL,
        module_version     integer NOT NULL,
        worker_id          text NOT NULL,
        outcome            text NOT NULL,
        started_at         text COLLATE "C" NOT NULL,
        finished_at        text COLLATE "C",
        duration_ms        bigint,
        exit_code          integer,
        error_code         text,
        error_kind         text,
        error              text,
        log_tail           text NOT NULL DEFAULT '',
        log_blob           text,
        counts_as_failure  boolean NOT NULL DEFAULT false,
        PRIMARY KEY (job_id, attempt)
      );

      CREATE TABLE insights (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        job_id          text NOT NULL REFERENCES jobs (job_id),
        module          text NOT NULL,
        event_id        text NOT NULL,
        correlation_id  text NOT NULL,
        key             text NOT NULL,
        value           text NOT NULL,
        created_at      text COLLATE "C" NOT NULL
      );
      CREATE INDEX insights_key_value ON insights (key, value, id);
      CREATE INDEX insights_correlation ON insights (correlation_id, id);
      CREATE INDEX insights_job ON insights (job_id, id);
      CREATE INDEX insights_module ON insights (module, id);

      CREATE TABLE outbox (
        id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        event_id      text NOT NULL REFERENCES events (event_id),
        subscription  text,                      -- null: publish by topic
        created_at    text COLLATE "C" NOT NULL,
        published_at  text COLLATE "C"
      );
      -- Only unpublished rows are indexed: the index stays small however long the table grows.
      CREATE INDEX outbox_pending ON outbox (id) WHERE published_at IS NULL;

      CREATE TABLE dead_letters (
        id          text PRIMARY KEY,
        seq         bigint GENERATED ALWAYS AS IDENTITY,
        job_id      text NOT NULL,               -- no foreign key: malformed messages have no job
        module      text NOT NULL,
        event_id    text,
        reason      text NOT NULL,
        attempts    integer NOT NULL,
        log_tail    text NOT NULL,
        created_at  text COLLATE "C" NOT NULL
      );
      CREATE INDEX dead_letters_module ON dead_letters (module, created_at DESC, seq DESC);
      CREATE INDEX dead_letters_created ON dead_letters (created_at DESC, seq DESC);
    `,
  },
  {
    version: 2,
    description: "a job's output files (everything it left in out/data)",
    sql: `ALTER TABLE jobs ADD COLUMN outputs_json jsonb NOT NULL DEFAULT '[]'::jsonb;`,
  },
  {
    version: 3,
    description: 'attempt leases: a duplicate delivery does not take over a live attempt',
    sql: `ALTER TABLE attempts ADD COLUMN lease_until text COLLATE "C";`,
  },
  {
    version: 4,
    description: 'API tokens, stored as sha256 hashes only',
    sql: `
      CREATE TABLE api_tokens (
        id            text PRIMARY KEY,
        seq           bigint GENERATED ALWAYS AS IDENTITY,
        name          text NOT NULL,
        scopes        jsonb NOT NULL,            -- string[]
        token_hash    text NOT NULL UNIQUE,      -- hex sha256 of the value; the value is never stored
        created_at    text COLLATE "C" NOT NULL,
        last_used_at  text COLLATE "C",
        revoked_at    text COLLATE "C"
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
      ALTER TABLE jobs ADD COLUMN replay_id text;
      ALTER TABLE jobs ADD COLUMN replay_of text;
      ALTER TABLE jobs ADD COLUMN pinned_version integer;
      ALTER TABLE jobs ADD COLUMN cancel_requested_at text COLLATE "C";
      CREATE INDEX jobs_replay ON jobs (replay_id, state);
      ALTER TABLE attempts ADD COLUMN log_size bigint;
      -- The job an outbox row asks to run when it is not the ordinary one (a replayed job).
      ALTER TABLE outbox ADD COLUMN job_id text;
      CREATE TABLE replays (
        replay_id       text PRIMARY KEY,
        module          text NOT NULL,
        module_version  integer,                 -- null: the version current when each job runs
        selector        jsonb NOT NULL,          -- ReplaySelector
        jobs            integer NOT NULL DEFAULT 0,
        created_at      text COLLATE "C" NOT NULL
      );
      CREATE INDEX replays_created ON replays (created_at DESC, replay_id DESC);
    `,
  },
  {
    version: 7,
    description: 'settlements: a trace whose jobs have all ended, raised as ion.trace.settled',
    sql: `
      CREATE TABLE settlements (
        correlation_id  text PRIMARY KEY,     -- once per trace, whatever ends its jobs again
        root_event_id   text NOT NULL,
        settled_at      text COLLATE "C" NOT NULL,
        jobs            jsonb NOT NULL,       -- JobStateCounts when it settled
        -- Set once handled: the ion.trace.settled event stored, or none needed (no subscriber).
        done            boolean NOT NULL DEFAULT false,
        event_id        text                  -- the ion.trace.settled event, when one was raised
      );
      CREATE INDEX settlements_open ON settlements (settled_at) WHERE NOT done;
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
      ALTER TABLE settlements ADD COLUMN claimed_by text;
      ALTER TABLE settlements ADD COLUMN claimed_until text COLLATE "C";
    `,
  },
];

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/**
 * The schema name as a quoted SQL identifier. Only plain identifiers are accepted, so the name
 * can be spliced into SQL text safely and reads the same in `psql`.
 */
export function quoteSchema(schema: string): string {
  if (!IDENTIFIER.test(schema)) {
    throw new ValidationError(
      `postgres-store: schema name ${JSON.stringify(schema)} must be a plain identifier ` +
        '(letters, digits, underscore; not starting with a digit; at most 63 characters)',
      [{ path: 'store.schema', message: 'not a plain SQL identifier' }],
    );
  }
  return `"${schema}"`;
}

/**
 * Applies the migrations not yet recorded, in one transaction holding an advisory lock keyed
 * on the schema, so concurrent starters serialise here and each migration runs once. The
 * caller owns `client` and releases it.
 */
export async function migrate(client: PoolClient, schema: string, nowIso: string): Promise<void> {
  const s = quoteSchema(schema);
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [
      `ion.document-store.migrate:${schema}`,
    ]);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
    await client.query(`SET LOCAL search_path TO ${s}`);
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version     integer PRIMARY KEY,
      description text NOT NULL,
      applied_at  text NOT NULL
    )`);
    const { rows } = await client.query<{ version: number }>(
      'SELECT version FROM schema_migrations',
    );
    const applied = new Set(rows.map((r) => r.version));
    for (const m of MIGRATIONS) {
      if (applied.has(m.version)) continue;
      await client.query(m.sql);
      await client.query(
        'INSERT INTO schema_migrations (version, description, applied_at) VALUES ($1, $2, $3)',
        [m.version, m.description, nowIso],
      );
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
