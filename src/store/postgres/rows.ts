import type { QueryResult, QueryResultRow } from 'pg';
import { NotFoundError } from '../../core/errors.js';
import type { DeadLetter, IonEvent, Job, ModuleSpec } from '../../core/types.js';
// Shared by both stores; re-exported so this adapter's modules import rows from one place.
export * from '../rows.js';
import * as shared from '../rows.js';

// jsonb columns arrive decoded, so the shared mappers read these rows as they are.
export const toModule = shared.moduleFromRow;
export const toEvent = shared.eventFromRow;
export const toJob = shared.jobFromRow;
import type { BeginAttemptInput } from '../document-store.js';
import { quoteSchema } from './schema.js';

/**
 * Row shapes of the Postgres document store, their mapping to domain types, and the small
 * statements several store methods share. Internal to the Postgres adapter; the counterpart
 * of the SQLite adapter's `rows.ts`.
 */

/** A pool or a checked-out client: anything that runs a parameterised query. */
export interface Queryable {
  query<R extends QueryResultRow>(text: string, values?: unknown[]): Promise<QueryResult<R>>;
}

/** Schema-qualified table names, spliced into SQL (the schema name is validated). */
export interface Tables {
  modules: string;
  moduleVersions: string;
  modulesRevision: string;
  events: string;
  jobs: string;
  attempts: string;
  insights: string;
  outbox: string;
  deadLetters: string;
  replays: string;
  settlements: string;
}

export function tables(schema: string): Tables {
  const s = quoteSchema(schema);
  return {
    modules: `${s}.modules`,
    moduleVersions: `${s}.module_versions`,
    modulesRevision: `${s}.modules_revision`,
    events: `${s}.events`,
    jobs: `${s}.jobs`,
    attempts: `${s}.attempts`,
    insights: `${s}.insights`,
    outbox: `${s}.outbox`,
    deadLetters: `${s}.dead_letters`,
    replays: `${s}.replays`,
    settlements: `${s}.settlements`,
  };
}

/** What every shared statement needs: where to run it and which tables to name. */
export interface Ctx {
  q: Queryable;
  t: Tables;
}

// -- rows as pg returns them (jsonb parsed, bigint as string) ----------------------------------

export type ModuleRow = shared.DecodedModuleRow & {
  timeout_ms: string;
  paused: boolean;
  deleted: boolean;
};

export type EventRow = shared.DecodedEventRow;

export type JobRow = shared.DecodedJobRow;

export type OutboxRow = shared.OutboxJoinRow & { id: string };

/**
 * Postgres `text` cannot hold NUL characters; free-form diagnostics (log tails, error messages)
 * may carry them from a module's output, so they are replaced rather than failing the commit.
 */
export function pgText(s: string): string;
export function pgText(s: string | null): string | null;
export function pgText(s: string | null): string | null {
  return s === null || !s.includes('\u0000') ? s : s.replaceAll('\u0000', '\uFFFD');
}

/**
 * Writes `version` of a module (insert, or overwrite and revive the live row) and records
 * it in `module_versions`, the history every past version stays in.
 */
export async function writeModuleVersion(
  { q, t }: Ctx,
  spec: ModuleSpec,
  version: number,
  specJson: string,
  now: string,
): Promise<ModuleRow> {
  const { rows } = await q.query<ModuleRow>(
    `INSERT INTO ${t.modules} (name, version, subscribes, publishes, executor, command, cwd,
       retries, timeout_ms, concurrency, env, spec_json, paused, deleted, created_at, updated_at)
     VALUES ($1, $2, $3::jsonb, $4::jsonb, $5, $6::jsonb, $7, $8, $9, $10, $11::jsonb, $12,
       false, false, $13, $13)
     ON CONFLICT (name) DO UPDATE SET version = excluded.version,
       subscribes = excluded.subscribes, publishes = excluded.publishes,
       executor = excluded.executor, command = excluded.command, cwd = excluded.cwd,
       retries = excluded.retries, timeout_ms = excluded.timeout_ms,
       concurrency = excluded.concurrency, env = excluded.env, spec_json = excluded.spec_json,
       deleted = false, updated_at = excluded.updated_at
     RETURNING *`,
    [
      spec.name,
      version,
      JSON.stringify(spec.subscribes),
      JSON.stringify(spec.publishes),
      spec.executor ?? '',
      JSON.stringify(spec.run.command ?? []),
      spec.run.cwd ?? null,
      spec.retries,
      spec.timeoutMs,
      spec.concurrency,
      JSON.stringify(spec.env),
      specJson,
      now,
    ],
  );
  await q.query(
    `INSERT INTO ${t.moduleVersions} (name, version, spec_json, created_at)
     VALUES ($1, $2, $3, $4)`,
    [spec.name, version, specJson, now],
  );
  return rows[0]!;
}

// -- shared statements ----------------------------------------------------------------------

/** One atomic increment: concurrent writers queue on the row lock, none is lost. */
export async function bumpRevision({ q, t }: Ctx): Promise<void> {
  await q.query(`UPDATE ${t.modulesRevision} SET revision = revision + 1 WHERE id = 1`);
}

export async function eventRow({ q, t }: Ctx, eventId: string): Promise<IonEvent | null> {
  const { rows } = await q.query<EventRow>(`SELECT * FROM ${t.events} WHERE event_id = $1`, [
    eventId,
  ]);
  return rows[0] ? toEvent(rows[0]) : null;
}

/**
 * Inserts the event unless its id exists; true when it was inserted. A concurrent insert of
 * the same id waits for the other transaction and then does nothing, so exactly one wins.
 */
export async function insertEventIfAbsent({ q, t }: Ctx, e: IonEvent): Promise<boolean> {
  const res = await q.query(
    `INSERT INTO ${t.events} (${shared.EVENT_COLUMNS})
     VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb, $9)
     ON CONFLICT (event_id) DO NOTHING`,
    shared.eventInsertValues(e),
  );
  return (res.rowCount ?? 0) > 0;
}

/** An outbox row: publish by topic, or (`subscription` set) send to one module's queue. */
export async function insertOutbox(
  { q, t }: Ctx,
  eventId: string,
  subscription: string | null,
  at: string,
  jobId: string | null = null,
): Promise<void> {
  await q.query(
    `INSERT INTO ${t.outbox} (event_id, subscription, created_at, job_id)
     VALUES ($1, $2, $3, $4)`,
    [eventId, subscription, at, jobId],
  );
}

export async function insertRunningAttempt(
  { q, t }: Ctx,
  input: BeginAttemptInput,
  attempt: number,
): Promise<void> {
  await q.query(
    `INSERT INTO ${t.attempts} (job_id, attempt, module_version, worker_id, outcome, started_at,
       lease_until)
     VALUES ($1, $2, $3, $4, 'running', $5, $6)`,
    [input.jobId, attempt, input.moduleVersion, input.workerId, input.startedAt, input.leaseUntil],
  );
}

/** Insert or replace (as SQLite's `INSERT OR REPLACE`: a replaced row sorts as new). */
export async function insertDeadLetter({ q, t }: Ctx, d: DeadLetter): Promise<void> {
  await q.query(
    `INSERT INTO ${t.deadLetters} (id, job_id, module, event_id, reason, attempts, log_tail,
       created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (id) DO UPDATE SET job_id = excluded.job_id, module = excluded.module,
       event_id = excluded.event_id, reason = excluded.reason, attempts = excluded.attempts,
       log_tail = excluded.log_tail, created_at = excluded.created_at, seq = DEFAULT`,
    [
      d.id,
      d.jobId,
      d.module,
      d.eventId,
      pgText(d.reason),
      d.attempts,
      pgText(d.logTail),
      d.createdAt,
    ],
  );
}

/** The job row; `forUpdate` locks it until the transaction ends (writers of one job queue). */
export async function jobRow(
  { q, t }: Ctx,
  jobId: string,
  forUpdate = false,
): Promise<JobRow | undefined> {
  const { rows } = await q.query<JobRow>(
    `SELECT * FROM ${t.jobs} WHERE job_id = $1${forUpdate ? ' FOR UPDATE' : ''}`,
    [jobId],
  );
  return rows[0];
}

/** The job, or a NotFoundError: callers of fail/commit always name an existing job. */
export async function requireJob(ctx: Ctx, jobId: string, forUpdate = false): Promise<Job> {
  const row = await jobRow(ctx, jobId, forUpdate);
  if (!row) throw new NotFoundError(`job ${jobId} does not exist`);
  return toJob(row);
}

/** `WHERE a = $1 AND ...` from the defined filters and ranges (see {@link shared.whereClause}). */
export function conditions(
  filters: Record<string, string | undefined>,
  ranges: readonly shared.TimeRange[] = [],
): { where: string; params: string[] } {
  return shared.whereClause(filters, ranges, (n) => `$${n}`);
}
