import type {
  Attempt,
  DeadLetter,
  FailureKind,
  FileRef,
  Insight,
  IonEvent,
  Job,
  JobState,
  KeyValue,
  ModuleRecord,
  ModuleSpec,
  Replay,
  ReplaySelector,
} from '../core/types.js';
import type { JobSnapshot } from '../core/job-lifecycle.js';
import type { OutboxEntry } from './document-store.js';

/** A time range on a column: `since` inclusive, `until` exclusive (ISO 8601 text compares in order). */
export interface TimeRange {
  col: string;
  since: string | undefined;
  until: string | undefined;
}

/**
 * Builds `WHERE a = ? AND b >= ?` from the defined equality filters and time ranges (column
 * names are ours, not input); `ph(n)` renders the n-th (1-based) placeholder (`?` for SQLite,
 * `$n` for PostgreSQL). `params` holds the values in order, so further placeholders start at
 * `params.length + 1`.
 */
export function whereClause(
  filters: Record<string, string | undefined>,
  ranges: readonly TimeRange[],
  ph: (n: number) => string,
): { where: string; params: string[] } {
  const cols: string[] = [];
  const params: string[] = [];
  const add = (col: string, op: string, value: string): void => {
    params.push(value);
    cols.push(`${col} ${op} ${ph(params.length)}`);
  };
  for (const [col, value] of Object.entries(filters)) if (value !== undefined) add(col, '=', value);
  for (const { col, since, until } of ranges) {
    if (since !== undefined) add(col, '>=', since);
    if (until !== undefined) add(col, '<', until);
  }
  return { where: cols.length ? `WHERE ${cols.join(' AND ')}` : '', params };
}

/**
 * Rows and row mappers both document-store adapters share: their tables have the same
 * columns, so a row reads back into the domain the same way whatever the database.
 */

/**
 * A module row with its JSON columns decoded (PostgreSQL's jsonb arrives decoded; the SQLite
 * adapter parses its text columns first). Booleans and bigints come as each driver gives them.
 */
export interface DecodedModuleRow {
  name: string;
  version: number;
  subscribes: string[];
  publishes: string[];
  executor: string;
  command: string[];
  cwd: string | null;
  retries: number;
  timeout_ms: number | string;
  concurrency: number;
  env: Record<string, string>;
  /** The canonical spec ({@link canonicalSpec}): the source of the run fields. */
  spec_json: string;
  paused: boolean | number;
  created_at: string;
  updated_at: string;
}

export interface DecodedEventRow {
  event_id: string;
  type: string;
  correlation_id: string;
  parent_event_id: string | null;
  source: string;
  source_job_id: string | null;
  data: KeyValue[];
  files: FileRef[];
  created_at: string;
}

export interface DecodedJobRow {
  job_id: string;
  module: string;
  module_version: number;
  event_id: string;
  correlation_id: string;
  state: string;
  attempts: number;
  /** Failed attempts since the last redrive: the retry budget spent. */
  failures_since_redrive: number;
  created_at: string;
  updated_at: string;
  finished_at: string | null;
  last_error: string | null;
  outputs_json: FileRef[];
  replay_id: string | null;
  replay_of: string | null;
  pinned_version: number | null;
  cancel_requested_at: string | null;
}

export function moduleFromRow(r: DecodedModuleRow): ModuleRecord {
  return {
    ...specFromJson(r.spec_json),
    name: r.name,
    subscribes: r.subscribes,
    publishes: r.publishes,
    retries: r.retries,
    timeoutMs: Number(r.timeout_ms),
    concurrency: r.concurrency,
    env: r.env,
    version: r.version,
    paused: Boolean(r.paused),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
}

export function eventFromRow(r: DecodedEventRow): IonEvent {
  return {
    eventId: r.event_id,
    type: r.type,
    correlationId: r.correlation_id,
    parentEventId: r.parent_event_id,
    source: r.source,
    sourceJobId: r.source_job_id,
    data: r.data,
    files: r.files,
    createdAt: r.created_at,
  };
}

export function jobFromRow(r: DecodedJobRow): Job {
  return {
    jobId: r.job_id,
    module: r.module,
    moduleVersion: r.module_version,
    eventId: r.event_id,
    correlationId: r.correlation_id,
    state: r.state as JobState,
    attempts: r.attempts,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    finishedAt: r.finished_at,
    lastError: r.last_error,
    outputs: r.outputs_json,
    replayId: r.replay_id,
    replayOf: r.replay_of,
    pinnedVersion: r.pinned_version,
    cancelRequestedAt: r.cancel_requested_at,
  };
}

export interface AttemptRow {
  job_id: string;
  attempt: number;
  module_version: number;
  worker_id: string;
  outcome: string;
  started_at: string;
  finished_at: string | null;
  /** PostgreSQL returns bigint as text. */
  duration_ms: number | string | null;
  exit_code: number | null;
  error_code: string | null;
  error_kind: string | null;
  error: string | null;
  log_tail: string;
  log_blob: string | null;
  /** PostgreSQL returns bigint as text. */
  log_size: number | string | null;
}

export interface InsightRow {
  job_id: string;
  module: string;
  event_id: string;
  correlation_id: string;
  key: string;
  value: string;
  created_at: string;
}

export interface DeadLetterRow {
  id: string;
  job_id: string;
  module: string;
  event_id: string | null;
  reason: string;
  attempts: number;
  log_tail: string;
  created_at: string;
}

export function toAttempt(r: AttemptRow): Attempt {
  return {
    jobId: r.job_id,
    attempt: r.attempt,
    moduleVersion: r.module_version,
    workerId: r.worker_id,
    outcome: r.outcome as Attempt['outcome'],
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    durationMs: r.duration_ms === null ? null : Number(r.duration_ms),
    exitCode: r.exit_code,
    errorCode: r.error_code,
    errorKind: r.error_kind as FailureKind | null,
    error: r.error,
    logTail: r.log_tail,
    logSize: r.log_size === null ? null : Number(r.log_size),
    logBlob: r.log_blob,
  };
}

export interface DecodedReplayRow {
  replay_id: string;
  module: string;
  module_version: number | null;
  selector: ReplaySelector;
  jobs: number;
  created_at: string;
}

export function replayFromRow(r: DecodedReplayRow): Replay {
  return {
    replayId: r.replay_id,
    module: r.module,
    moduleVersion: r.module_version,
    selector: r.selector,
    jobs: Number(r.jobs),
    createdAt: r.created_at,
  };
}

export function toInsight(r: InsightRow): Insight {
  return {
    jobId: r.job_id,
    module: r.module,
    eventId: r.event_id,
    correlationId: r.correlation_id,
    key: r.key,
    value: r.value,
    createdAt: r.created_at,
  };
}

export function toDeadLetter(r: DeadLetterRow): DeadLetter {
  return {
    id: r.id,
    jobId: r.job_id,
    module: r.module,
    eventId: r.event_id,
    reason: r.reason,
    attempts: r.attempts,
    logTail: r.log_tail,
    createdAt: r.created_at,
  };
}

/**
 * Canonical JSON of a module spec: fixed field order and sorted env keys, so two specs that
 * mean the same thing compare equal whatever order their producer wrote them in, and both
 * stores version a module the same way. Fields added after the first release (the container
 * fields, resources, warm) appear only when set, so a module that uses none of them keeps
 * the canonical form, and the version, it had before they existed.
 */
export function canonicalSpec(spec: ModuleSpec): string {
  const env = Object.fromEntries(
    Object.entries(spec.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
  );
  const { command, cwd, args, image, pull, network, user } = spec.run;
  return JSON.stringify({
    name: spec.name,
    subscribes: spec.subscribes,
    publishes: spec.publishes,
    executor: spec.executor ?? null,
    run: { command: command ?? null, cwd: cwd ?? null, args, image, pull, network, user },
    retries: spec.retries,
    timeoutMs: spec.timeoutMs,
    concurrency: spec.concurrency,
    env,
    resources: spec.resources,
    warm: spec.warm,
  });
}

/** A spec read back from its canonical JSON: absent fields left out, as the pipeline gives them. */
export function specFromJson(specJson: string): ModuleSpec {
  const stored = JSON.parse(specJson) as Omit<ModuleSpec, 'run' | 'executor'> & {
    executor: ModuleSpec['executor'] | null;
    run: Omit<ModuleSpec['run'], 'command' | 'cwd'> & {
      command: string[] | null;
      cwd: string | null;
    };
  };
  const { command, cwd, ...rest } = stored.run;
  const run: ModuleSpec['run'] = { ...rest };
  if (command !== null) run.command = command;
  if (cwd !== null && cwd !== undefined) run.cwd = cwd;
  const { executor, ...spec } = stored;
  // Specs stored before executors were chosen per worker say `local` for "the default".
  return { ...spec, run, ...(executor === null || executor === undefined ? {} : { executor }) };
}

/** What the job lifecycle (core/job-lifecycle.ts) needs of a job row, in either store. */
export function jobSnapshot(r: {
  state: string;
  attempts: number;
  failures_since_redrive: number;
  cancel_requested_at: string | null;
}): JobSnapshot {
  return {
    state: r.state as JobState,
    attempts: r.attempts,
    failuresSinceRedrive: r.failures_since_redrive,
    cancelRequestedAt: r.cancel_requested_at,
  };
}

/** An outbox row joined with its event's type and correlation id, as both stores read it. */
export interface OutboxJoinRow {
  id: number | string;
  event_id: string;
  type: string;
  correlation_id: string;
  subscription: string | null;
  job_id: string | null;
}

export function toOutboxEntry(r: OutboxJoinRow): OutboxEntry {
  return {
    id: String(r.id),
    eventId: r.event_id,
    type: r.type,
    correlationId: r.correlation_id,
    subscription: r.subscription,
    jobId: r.job_id,
  };
}

/** The columns of an event row, in the order of {@link eventInsertValues}. */
export const EVENT_COLUMNS =
  'event_id, type, correlation_id, parent_event_id, source, source_job_id, data, files, created_at';

/** An event's values for {@link EVENT_COLUMNS}; data and files as JSON text. */
export function eventInsertValues(e: IonEvent): (string | null)[] {
  return [
    e.eventId,
    e.type,
    e.correlationId,
    e.parentEventId,
    e.source,
    e.sourceJobId,
    JSON.stringify(e.data),
    JSON.stringify(e.files),
    e.createdAt,
  ];
}
