import type { Database } from 'better-sqlite3';
import { NotFoundError } from '../../core/errors.js';
import type {
  DeadLetter,
  FileRef,
  IonEvent,
  Job,
  ModuleRecord,
  ModuleSpec,
} from '../../core/types.js';
// Shared by both stores; re-exported so this adapter's modules import rows from one place.
export * from '../rows.js';
import type { BeginAttemptInput } from '../document-store.js';
import * as shared from '../rows.js';

/**
 * Row shapes of the SQLite document store, their mapping to domain types, and the small
 * statements several store methods share. Internal to the SQLite adapter.
 */
// -- rows as SQLite returns them ----------------------------------------------------------------

/** JSON columns as text, booleans as 0/1. */
export type ModuleRow = Omit<
  shared.DecodedModuleRow,
  'subscribes' | 'publishes' | 'command' | 'env' | 'timeout_ms' | 'paused'
> & {
  subscribes: string;
  publishes: string;
  command: string;
  env: string;
  timeout_ms: number;
  paused: number;
  deleted: number;
};

export type EventRow = Omit<shared.DecodedEventRow, 'data' | 'files'> & {
  data: string;
  files: string;
};

export type JobRow = Omit<shared.DecodedJobRow, 'outputs_json'> & { outputs_json: string };

export type OutboxRow = shared.OutboxJoinRow & { id: number };

export function toModule(r: ModuleRow): ModuleRecord {
  return shared.moduleFromRow({
    ...r,
    subscribes: JSON.parse(r.subscribes) as string[],
    publishes: JSON.parse(r.publishes) as string[],
    command: JSON.parse(r.command) as string[],
    env: JSON.parse(r.env) as Record<string, string>,
  });
}

export function toEvent(r: EventRow): IonEvent {
  return shared.eventFromRow({
    ...r,
    data: JSON.parse(r.data) as IonEvent['data'],
    files: JSON.parse(r.files) as IonEvent['files'],
  });
}

export function toJob(r: JobRow): Job {
  return shared.jobFromRow({ ...r, outputs_json: JSON.parse(r.outputs_json) as FileRef[] });
}

/**
 * Writes `version` of a module (insert, or overwrite and revive the live row) and records
 * it in `module_versions`, the history every past version stays in.
 */
export function writeModuleVersion(
  db: Database,
  spec: ModuleSpec,
  version: number,
  specJson: string,
  now: string,
): void {
  const values = {
    name: spec.name,
    version,
    subscribes: JSON.stringify(spec.subscribes),
    publishes: JSON.stringify(spec.publishes),
    executor: spec.executor ?? '',
    command: JSON.stringify(spec.run.command ?? []),
    cwd: spec.run.cwd ?? null,
    retries: spec.retries,
    timeout_ms: spec.timeoutMs,
    concurrency: spec.concurrency,
    env: JSON.stringify(spec.env),
    spec_json: specJson,
    now,
  };
  db.prepare(
    `INSERT INTO modules (name, version, subscribes, publishes, executor, command, cwd,
       retries, timeout_ms, concurrency, env, spec_json, paused, deleted, created_at, updated_at)
     VALUES (@name, @version, @subscribes, @publishes, @executor, @command, @cwd, @retries,
       @timeout_ms, @concurrency, @env, @spec_json, 0, 0, @now, @now)
     ON CONFLICT (name) DO UPDATE SET version = excluded.version,
       subscribes = excluded.subscribes, publishes = excluded.publishes,
       executor = excluded.executor, command = excluded.command, cwd = excluded.cwd,
       retries = excluded.retries, timeout_ms = excluded.timeout_ms,
       concurrency = excluded.concurrency, env = excluded.env, spec_json = excluded.spec_json,
       deleted = 0, updated_at = excluded.updated_at`,
  ).run(values);
  db.prepare(
    'INSERT INTO module_versions (name, version, spec_json, created_at) VALUES (?, ?, ?, ?)',
  ).run(spec.name, version, specJson, now);
}

// -- shared statements ----------------------------------------------------------------------

export function bumpRevision(db: Database): void {
  db.prepare('UPDATE modules_revision SET revision = revision + 1 WHERE id = 1').run();
}

export function eventRow(db: Database, eventId: string): IonEvent | null {
  const row = db.prepare('SELECT * FROM events WHERE event_id = ?').get(eventId) as
    EventRow | undefined;
  return row ? toEvent(row) : null;
}

/** Inserts the event unless its id exists; true when it was inserted. */
export function insertEventIfAbsent(db: Database, e: IonEvent): boolean {
  return (
    db
      .prepare(
        `INSERT INTO events (${shared.EVENT_COLUMNS})
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING`,
      )
      .run(shared.eventInsertValues(e)).changes > 0
  );
}

/** An outbox row: publish by topic, or (`subscription` set) send to one module's queue. */
export function insertOutbox(
  db: Database,
  eventId: string,
  subscription: string | null,
  at: string,
  jobId: string | null = null,
): void {
  db.prepare(
    'INSERT INTO outbox (event_id, subscription, created_at, job_id) VALUES (?, ?, ?, ?)',
  ).run(eventId, subscription, at, jobId);
}

export function insertRunningAttempt(
  db: Database,
  input: BeginAttemptInput,
  attempt: number,
): void {
  db.prepare(
    `INSERT INTO attempts (job_id, attempt, module_version, worker_id, outcome, started_at,
       lease_until)
     VALUES (?, ?, ?, ?, 'running', ?, ?)`,
  ).run(
    input.jobId,
    attempt,
    input.moduleVersion,
    input.workerId,
    input.startedAt,
    input.leaseUntil,
  );
}

export function insertDeadLetter(db: Database, d: DeadLetter): void {
  db.prepare(
    `INSERT OR REPLACE INTO dead_letters (id, job_id, module, event_id, reason, attempts,
       log_tail, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
  ).run(d.id, d.jobId, d.module, d.eventId, d.reason, d.attempts, d.logTail, d.createdAt);
}

export function jobRow(db: Database, jobId: string): JobRow | undefined {
  return db.prepare('SELECT * FROM jobs WHERE job_id = ?').get(jobId) as JobRow | undefined;
}

/** The job, or a NotFoundError: callers of fail/commit always name an existing job. */
export function requireJob(db: Database, jobId: string): Job {
  const row = jobRow(db, jobId);
  if (!row) throw new NotFoundError(`job ${jobId} does not exist`);
  return toJob(row);
}

/** `WHERE a = ? AND ...` from the defined filters and ranges (see {@link shared.whereClause}). */
export function conditions(
  filters: Record<string, string | undefined>,
  ranges: readonly shared.TimeRange[] = [],
): { where: string; params: string[] } {
  return shared.whereClause(filters, ranges, () => '?');
}
