import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import type { Database } from 'better-sqlite3';
import { NotFoundError, UnavailableError, wrapDriverError } from '../../core/errors.js';
import { nowIso } from '../../core/time.js';
import { jobIdFor } from '../../core/ids.js';
import type {
  Attempt,
  DeadLetter,
  Insight,
  IonEvent,
  Job,
  ModuleRecord,
  ModuleSpec,
  Replay,
  ReplayStatus,
  Trace,
} from '../../core/types.js';
import { jobHasEnded, jobStateCounts } from '../../core/types.js';
import type {
  BeginAttemptInput,
  BeginAttemptResult,
  CancelResult,
  CommitAttemptInput,
  DocumentStore,
  EventFilter,
  FailAttemptInput,
  InsightFilter,
  JobFilter,
  LogProgress,
  ModuleVersion,
  OutboxEntry,
  RenewResult,
  ReplayTarget,
  UpsertModuleResult,
} from '../document-store.js';
import type { TokenRecord } from '../../core/tokens.js';
import {
  bumpRevision,
  canonicalSpec,
  conditions,
  eventRow,
  insertDeadLetter,
  insertEventIfAbsent,
  insertOutbox,
  insertRunningAttempt,
  jobRow,
  requireJob,
  writeModuleVersion,
  toAttempt,
  toDeadLetter,
  toEvent,
  toInsight,
  toJob,
  toModule,
} from './rows.js';
import type {
  AttemptRow,
  DeadLetterRow,
  EventRow,
  InsightRow,
  JobRow,
  ModuleRow,
  OutboxRow,
} from './rows.js';
import { migrate } from './schema.js';
import { eventPage, eventQuery, insightExtraConditions } from '../event-cursor.js';
import { toModuleVersion } from '../module-version.js';
import { failureOutcome, replayFromRow } from '../rows.js';
import { allTokens, insertToken, revokeToken, tokenByHash, touchToken } from './tokens.js';
import type { Settlement } from '../../core/trace-settled.js';
import {
  closeSettlement,
  getSettlement,
  openSettlements,
  recordSettledEvent,
  settleIfDone,
} from './settlements.js';

const ADAPTER = 'sqlite-store';

function toReplay(r: ReplayRow): Replay {
  return replayFromRow({ ...r, selector: JSON.parse(r.selector) as Replay['selector'] });
}
const WORKER_LOST_MESSAGE = 'the worker running this attempt stopped before it finished';
const CANCELLED_MESSAGE = 'cancelled on request';

interface ReplayRow {
  replay_id: string;
  module: string;
  module_version: number | null;
  selector: string;
  jobs: number;
  created_at: string;
}

export interface SqliteDocumentStoreOptions {
  /** Database file; `:memory:` for a private in-process store. Parent dirs are created. */
  path: string;
}

/**
 * The embedded {@link DocumentStore}: one SQLite file in WAL mode. Every multi-record change
 * runs in a `BEGIN IMMEDIATE` transaction, which takes the write lock up front, so several
 * processes on the same file serialise their writes (waiting up to `busy_timeout`) instead
 * of failing half-way with `SQLITE_BUSY` on lock upgrade.
 */
export class SqliteDocumentStore implements DocumentStore {
  private db: Database | null = null;
  private closed = false;

  constructor(private readonly options: SqliteDocumentStoreOptions) {}

  start(): Promise<void> {
    return this.attempt('start', () => {
      if (this.db) return;
      const { path } = this.options;
      if (path !== ':memory:' && !path.startsWith('file:')) {
        mkdirSync(dirname(path), { recursive: true });
      }
      const db = new BetterSqlite3(path);
      try {
        db.pragma('busy_timeout = 5000');
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = NORMAL');
        db.pragma('foreign_keys = ON');
        migrate(db, nowIso());
      } catch (err) {
        db.close();
        throw err;
      }
      this.db = db;
      this.closed = false;
    });
  }

  close(): Promise<void> {
    const db = this.db;
    this.db = null;
    this.closed = true;
    if (db?.open) db.close();
    return Promise.resolve();
  }

  // -- modules ----------------------------------------------------------------------------

  upsertModule(spec: ModuleSpec): Promise<UpsertModuleResult> {
    return this.write('upsert module', (db) => {
      const specJson = canonicalSpec(spec);
      const now = nowIso();
      const row = db.prepare('SELECT * FROM modules WHERE name = ?').get(spec.name) as
        ModuleRow | undefined;
      if (row && row.deleted === 0 && row.spec_json === specJson) {
        return { module: toModule(row), change: 'unchanged' as const };
      }
      const version = row ? row.version + 1 : 1;
      writeModuleVersion(db, spec, version, specJson, now);
      bumpRevision(db);
      const stored = db.prepare('SELECT * FROM modules WHERE name = ?').get(spec.name) as ModuleRow;
      // A module revived after a delete is reported as created: it was absent a moment ago.
      const change = row && row.deleted === 0 ? ('updated' as const) : ('created' as const);
      return { module: toModule(stored), change };
    });
  }

  getModule(name: string): Promise<ModuleRecord | null> {
    return this.read('get module', (db) => {
      const row = db.prepare('SELECT * FROM modules WHERE name = ? AND deleted = 0').get(name) as
        ModuleRow | undefined;
      return row ? toModule(row) : null;
    });
  }

  listModules(): Promise<ModuleRecord[]> {
    return this.read('list modules', (db) =>
      (
        db.prepare('SELECT * FROM modules WHERE deleted = 0 ORDER BY name').all() as ModuleRow[]
      ).map(toModule),
    );
  }

  deleteModule(name: string): Promise<boolean> {
    return this.write('delete module', (db) => {
      const res = db
        .prepare('UPDATE modules SET deleted = 1, updated_at = ? WHERE name = ? AND deleted = 0')
        .run(nowIso(), name);
      if (res.changes === 0) return false;
      bumpRevision(db);
      return true;
    });
  }

  modulesRevision(): Promise<number> {
    return this.read('read modules revision', (db) => {
      const row = db.prepare('SELECT revision FROM modules_revision WHERE id = 1').get() as {
        revision: number;
      };
      return row.revision;
    });
  }

  // -- events -----------------------------------------------------------------------------

  insertRootEvent(event: IonEvent): Promise<{ event: IonEvent; created: boolean }> {
    return this.write('insert root event', (db) => {
      if (insertEventIfAbsent(db, event)) {
        insertOutbox(db, event.eventId, null, event.createdAt);
        return { event: eventRow(db, event.eventId) ?? event, created: true };
      }
      return { event: eventRow(db, event.eventId) ?? event, created: false };
    });
  }

  getEvent(eventId: string): Promise<IonEvent | null> {
    return this.read('get event', (db) => eventRow(db, eventId));
  }

  // -- jobs -------------------------------------------------------------------------------

  getJob(jobId: string): Promise<Job | null> {
    return this.read('get job', (db) => {
      const row = jobRow(db, jobId);
      return row ? toJob(row) : null;
    });
  }

  listJobs(filter: JobFilter = {}): Promise<Job[]> {
    return this.read('list jobs', (db) => {
      const { where, params } = conditions(
        {
          module: filter.module,
          state: filter.state,
          correlation_id: filter.correlationId,
          event_id: filter.eventId,
          replay_id: filter.replayId,
        },
        [{ col: 'updated_at', since: filter.since, until: filter.until }],
      );
      const rows = db
        .prepare(`SELECT * FROM jobs ${where} ORDER BY updated_at DESC, rowid DESC LIMIT ?`)
        .all(...params, filter.limit ?? 100) as JobRow[];
      return rows.map(toJob);
    });
  }

  listAttempts(jobId: string): Promise<Attempt[]> {
    return this.read('list attempts', (db) =>
      (
        db
          .prepare('SELECT * FROM attempts WHERE job_id = ? ORDER BY attempt')
          .all(jobId) as AttemptRow[]
      ).map(toAttempt),
    );
  }

  beginAttempt(input: BeginAttemptInput): Promise<BeginAttemptResult> {
    return this.write('begin attempt', (db): BeginAttemptResult => {
      // The event normally exists already (root insert or parent commit); inserting it if
      // absent keeps the job's foreign key satisfied whatever route the delivery took.
      insertEventIfAbsent(db, input.event);
      const existing = jobRow(db, input.jobId);
      if (!existing) {
        db.prepare(
          `INSERT INTO jobs (job_id, module, module_version, event_id, correlation_id, state,
             attempts, failures_since_redrive, created_at, updated_at)
           VALUES (?, ?, ?, ?, ?, 'running', 1, 0, ?, ?)`,
        ).run(
          input.jobId,
          input.module,
          input.moduleVersion,
          input.event.eventId,
          input.event.correlationId,
          input.startedAt,
          input.startedAt,
        );
        insertRunningAttempt(db, input, 1);
        return { status: 'started', job: requireJob(db, input.jobId), attempt: 1, failures: 0 };
      }
      if (existing.state === 'succeeded') return { status: 'succeeded', job: toJob(existing) };
      if (existing.state === 'dead_lettered') {
        return { status: 'dead_lettered', job: toJob(existing) };
      }
      if (existing.state === 'cancelled') return { status: 'cancelled', job: toJob(existing) };
      const live = db
        .prepare(
          `SELECT attempt, lease_until FROM attempts
           WHERE job_id = ? AND outcome = 'running' AND lease_until > ?
           ORDER BY attempt DESC LIMIT 1`,
        )
        .get(input.jobId, input.startedAt) as { attempt: number; lease_until: string } | undefined;
      if (live) {
        return {
          status: 'busy',
          job: toJob(existing),
          attempt: live.attempt,
          leaseUntil: live.lease_until,
        };
      }
      const lost = db
        .prepare(
          `UPDATE attempts SET outcome = 'failed', finished_at = ?, error_code = 'worker_lost',
             error_kind = 'platform', error = ?, counts_as_failure = 1
           WHERE job_id = ? AND outcome = 'running'`,
        )
        .run(input.startedAt, WORKER_LOST_MESSAGE, input.jobId).changes;
      if (existing.cancel_requested_at !== null) {
        // Its worker died after a cancel was asked for: the cancel completes here.
        db.prepare(
          `UPDATE jobs SET state = 'cancelled', finished_at = ?, updated_at = ?, last_error = ?
           WHERE job_id = ?`,
        ).run(input.startedAt, input.startedAt, CANCELLED_MESSAGE, input.jobId);
        settleIfDone(db, existing.correlation_id, input.startedAt);
        return { status: 'cancelled', job: requireJob(db, input.jobId) };
      }
      const attempt = existing.attempts + 1;
      const failures = existing.failures_since_redrive + lost;
      db.prepare(
        `UPDATE jobs SET state = 'running', attempts = ?, module_version = ?,
           failures_since_redrive = ?, updated_at = ?,
           last_error = CASE WHEN ? > 0 THEN ? ELSE last_error END
         WHERE job_id = ?`,
      ).run(
        attempt,
        input.moduleVersion,
        failures,
        input.startedAt,
        lost,
        WORKER_LOST_MESSAGE,
        input.jobId,
      );
      insertRunningAttempt(db, input, attempt);
      return { status: 'started', job: requireJob(db, input.jobId), attempt, failures };
    });
  }

  renewAttempt(
    jobId: string,
    attempt: number,
    leaseUntil: string,
    progress?: LogProgress,
  ): Promise<RenewResult> {
    return this.write('renew attempt', (db): RenewResult => {
      const res =
        progress === undefined
          ? db
              .prepare(
                `UPDATE attempts SET lease_until = ?
                 WHERE job_id = ? AND attempt = ? AND outcome = 'running'`,
              )
              .run(leaseUntil, jobId, attempt)
          : db
              .prepare(
                `UPDATE attempts SET lease_until = ?, log_tail = ?, log_size = ?
                 WHERE job_id = ? AND attempt = ? AND outcome = 'running'`,
              )
              .run(leaseUntil, progress.logTail, progress.logSize, jobId, attempt);
      if (res.changes === 0) return 'closed';
      return jobRow(db, jobId)?.cancel_requested_at == null ? 'held' : 'cancel_requested';
    });
  }

  requestCancel(jobId: string, at: string): Promise<CancelResult | null> {
    return this.write('cancel job', (db): CancelResult | null => {
      const row = jobRow(db, jobId);
      if (!row) return null;
      const job = toJob(row);
      if (jobHasEnded(job.state)) return { status: 'settled', job };
      if (row.state === 'running') {
        db.prepare(
          'UPDATE jobs SET cancel_requested_at = COALESCE(cancel_requested_at, ?), updated_at = ? WHERE job_id = ?',
        ).run(at, at, jobId);
        return { status: 'cancelling', job: requireJob(db, jobId) };
      }
      db.prepare(
        `UPDATE jobs SET state = 'cancelled', cancel_requested_at = ?, finished_at = ?,
           updated_at = ?, last_error = ?
         WHERE job_id = ?`,
      ).run(at, at, at, CANCELLED_MESSAGE, jobId);
      settleIfDone(db, row.correlation_id, at);
      return { status: 'cancelled', job: requireJob(db, jobId) };
    });
  }

  failAttempt(input: FailAttemptInput): Promise<Job> {
    return this.write('fail attempt', (db) => {
      const job = requireJob(db, input.jobId);
      // A late report (the attempt was already closed, e.g. as worker_lost, or the job
      // succeeded through another attempt) must not overwrite newer state.
      const res = db
        .prepare(
          `UPDATE attempts SET outcome = 'failed', finished_at = ?, duration_ms = ?, exit_code = ?,
             error_code = ?, error_kind = ?, error = ?, log_tail = ?, log_blob = ?,
             counts_as_failure = ?
           WHERE job_id = ? AND attempt = ? AND outcome = 'running'`,
        )
        .run(
          input.finishedAt,
          input.durationMs,
          input.exitCode,
          input.errorCode,
          input.errorKind,
          input.error,
          input.logTail,
          input.logBlob,
          input.countsAsFailure ? 1 : 0,
          input.jobId,
          input.attempt,
        );
      if (res.changes === 0 || job.state === 'succeeded') return job;
      const { nextState, deadLetter } = failureOutcome(job, input);
      db.prepare(
        `UPDATE jobs SET state = ?, last_error = ?, finished_at = ?, updated_at = ?,
           failures_since_redrive = failures_since_redrive + ?
         WHERE job_id = ?`,
      ).run(
        nextState,
        input.error,
        input.finishedAt,
        input.finishedAt,
        input.countsAsFailure ? 1 : 0,
        input.jobId,
      );
      if (deadLetter !== null) insertDeadLetter(db, deadLetter);
      if (jobHasEnded(nextState)) settleIfDone(db, job.correlationId, input.finishedAt);
      return requireJob(db, input.jobId);
    });
  }

  commitAttempt(input: CommitAttemptInput): Promise<Job> {
    return this.write('commit attempt', (db) => {
      const job = requireJob(db, input.jobId);
      if (job.state === 'succeeded') return job;
      const res = db
        .prepare(
          `UPDATE attempts SET outcome = 'succeeded', finished_at = ?, duration_ms = ?,
             exit_code = ?, log_tail = ?, log_blob = ?, error_code = NULL, error_kind = NULL,
             error = NULL, counts_as_failure = 0
           WHERE job_id = ? AND attempt = ?`,
        )
        .run(
          input.finishedAt,
          input.durationMs,
          input.exitCode,
          input.logTail,
          input.logBlob,
          input.jobId,
          input.attempt,
        );
      if (res.changes === 0) {
        throw new NotFoundError(`attempt ${input.attempt} of job ${input.jobId} does not exist`);
      }
      const hasInsights = db
        .prepare('SELECT 1 FROM insights WHERE job_id = ? LIMIT 1')
        .get(job.jobId);
      if (!hasInsights) {
        const insert = db.prepare(
          `INSERT INTO insights (job_id, module, event_id, correlation_id, key, value, created_at)
           VALUES (?, ?, ?, ?, ?, ?, ?)`,
        );
        for (const kv of input.insights) {
          insert.run(
            job.jobId,
            job.module,
            job.eventId,
            job.correlationId,
            kv.key,
            kv.value,
            input.finishedAt,
          );
        }
      }
      for (const child of input.children) {
        if (insertEventIfAbsent(db, child)) {
          insertOutbox(db, child.eventId, null, input.finishedAt);
        }
      }
      db.prepare(
        `UPDATE jobs SET state = 'succeeded', last_error = NULL, finished_at = ?, updated_at = ?,
           outputs_json = ?
         WHERE job_id = ?`,
      ).run(input.finishedAt, input.finishedAt, JSON.stringify(input.outputs), input.jobId);
      settleIfDone(db, job.correlationId, input.finishedAt);
      return requireJob(db, input.jobId);
    });
  }

  // -- outbox -----------------------------------------------------------------------------

  pendingOutbox(limit: number): Promise<OutboxEntry[]> {
    return this.read('read outbox', (db) => {
      const rows = db
        .prepare(
          `SELECT o.id, o.event_id, e.type, e.correlation_id, o.subscription, o.job_id
           FROM outbox o JOIN events e ON e.event_id = o.event_id
           WHERE o.published_at IS NULL ORDER BY o.id LIMIT ?`,
        )
        .all(limit) as OutboxRow[];
      return rows.map((r) => ({
        id: String(r.id),
        eventId: r.event_id,
        type: r.type,
        correlationId: r.correlation_id,
        subscription: r.subscription,
        jobId: r.job_id,
      }));
    });
  }

  markPublished(ids: string[]): Promise<void> {
    return this.write('mark outbox published', (db) => {
      const now = nowIso();
      const update = db.prepare(
        'UPDATE outbox SET published_at = ? WHERE id = ? AND published_at IS NULL',
      );
      for (const id of ids) {
        const n = Number(id);
        if (Number.isSafeInteger(n)) update.run(now, n);
      }
    });
  }

  // -- settlements (rule and statements in settlements.ts) ---------------------------------

  getSettlement(correlationId: string): Promise<Settlement | null> {
    return this.read('get settlement', (db) => getSettlement(db, correlationId));
  }

  openSettlements(limit: number): Promise<Settlement[]> {
    return this.read('list open settlements', (db) => openSettlements(db, limit));
  }

  recordSettledEvent(event: IonEvent): Promise<{ created: boolean }> {
    return this.write('record settled event', (db) => recordSettledEvent(db, event));
  }

  closeSettlement(correlationId: string): Promise<void> {
    return this.write('close settlement', (db) => closeSettlement(db, correlationId));
  }

  // -- dead letters -----------------------------------------------------------------------

  addDeadLetter(entry: DeadLetter): Promise<void> {
    return this.write('add dead letter', (db) => insertDeadLetter(db, entry));
  }

  listDeadLetters(filter: { module?: string; limit?: number } = {}): Promise<DeadLetter[]> {
    return this.read('list dead letters', (db) => {
      const { where, params } = conditions({ module: filter.module });
      const rows = db
        .prepare(`SELECT * FROM dead_letters ${where} ORDER BY created_at DESC, rowid DESC LIMIT ?`)
        .all(...params, filter.limit ?? 100) as DeadLetterRow[];
      return rows.map(toDeadLetter);
    });
  }

  getDeadLetter(id: string): Promise<DeadLetter | null> {
    return this.read('get dead letter', (db) => {
      const row = db.prepare('SELECT * FROM dead_letters WHERE id = ?').get(id) as
        DeadLetterRow | undefined;
      return row ? toDeadLetter(row) : null;
    });
  }

  redriveDeadLetter(id: string): Promise<Job | null> {
    return this.write('redrive dead letter', (db) => {
      const dl = db.prepare('SELECT * FROM dead_letters WHERE id = ?').get(id) as
        DeadLetterRow | undefined;
      if (!dl) return null;
      db.prepare('DELETE FROM dead_letters WHERE id = ?').run(id);
      const job = jobRow(db, dl.job_id);
      if (!job) return null;
      const now = nowIso();
      db.prepare(
        `UPDATE jobs SET state = 'pending', failures_since_redrive = 0, updated_at = ?
         WHERE job_id = ?`,
      ).run(now, job.job_id);
      insertOutbox(db, job.event_id, job.module, now, job.replay_id === null ? null : job.job_id);
      return requireJob(db, job.job_id);
    });
  }

  discardDeadLetter(id: string): Promise<boolean> {
    return this.write(
      'discard dead letter',
      (db) => db.prepare('DELETE FROM dead_letters WHERE id = ?').run(id).changes > 0,
    );
  }

  // -- replays ---------------------------------------------------------------------------

  addReplayJobs(replay: Replay, targets: ReplayTarget[]): Promise<number> {
    return this.write('add replay jobs', (db) => {
      db.prepare(
        `INSERT OR IGNORE INTO replays (replay_id, module, module_version, selector, jobs, created_at)
         VALUES (?, ?, ?, ?, 0, ?)`,
      ).run(
        replay.replayId,
        replay.module,
        replay.moduleVersion,
        JSON.stringify(replay.selector),
        replay.createdAt,
      );
      const insert = db.prepare(
        `INSERT OR IGNORE INTO jobs (job_id, module, module_version, event_id, correlation_id,
           state, attempts, failures_since_redrive, created_at, updated_at, replay_id, replay_of,
           pinned_version)
         VALUES (?, ?, ?, ?, ?, 'pending', 0, 0, ?, ?, ?, ?, ?)`,
      );
      const now = nowIso();
      // Until a job starts it shows the version it will run: the pinned one, else the current.
      const current = db
        .prepare('SELECT version FROM modules WHERE name = ?')
        .get(replay.module) as { version: number } | undefined;
      const version = replay.moduleVersion ?? current?.version ?? 0;
      let created = 0;
      for (const target of targets) {
        const jobId = jobIdFor(replay.module, target.eventId, replay.replayId);
        const ordinary = jobIdFor(replay.module, target.eventId);
        const replayOf = jobRow(db, ordinary) ? ordinary : null;
        const res = insert.run(
          jobId,
          replay.module,
          version,
          target.eventId,
          target.correlationId,
          now,
          now,
          replay.replayId,
          replayOf,
          replay.moduleVersion,
        );
        if (res.changes === 0) continue;
        insertOutbox(db, target.eventId, replay.module, now, jobId);
        created += 1;
      }
      db.prepare('UPDATE replays SET jobs = jobs + ? WHERE replay_id = ?').run(
        created,
        replay.replayId,
      );
      return created;
    });
  }

  getReplay(replayId: string): Promise<ReplayStatus | null> {
    return this.read('get replay', (db) => {
      const row = db.prepare('SELECT * FROM replays WHERE replay_id = ?').get(replayId) as
        ReplayRow | undefined;
      if (!row) return null;
      const counts = db
        .prepare('SELECT state, COUNT(*) AS n FROM jobs WHERE replay_id = ? GROUP BY state')
        .all(replayId) as { state: string; n: number }[];
      return { ...toReplay(row), states: jobStateCounts(counts) };
    });
  }

  listReplays(filter: { module?: string; limit?: number } = {}): Promise<Replay[]> {
    return this.read('list replays', (db) => {
      const { where, params } = conditions({ module: filter.module });
      const rows = db
        .prepare(`SELECT * FROM replays ${where} ORDER BY created_at DESC, replay_id DESC LIMIT ?`)
        .all(...params, filter.limit ?? 100) as ReplayRow[];
      return rows.map(toReplay);
    });
  }

  // -- queries ----------------------------------------------------------------------------

  listInsights(filter: InsightFilter = {}): Promise<Insight[]> {
    return this.read('list insights', (db) => {
      const base = conditions({
        module: filter.module,
        key: filter.key,
        value: filter.value,
        correlation_id: filter.correlationId,
        job_id: filter.jobId,
      });
      const extra = insightExtraConditions(filter, 1, () => '?', true);
      const where = [base.where.replace(/^WHERE /, ''), ...extra.cols].filter(Boolean);
      const params = [...base.params, ...extra.params];
      const rows = db
        .prepare(
          `SELECT * FROM insights ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id LIMIT ?`,
        )
        .all(...params, filter.limit ?? 1000) as InsightRow[];
      return rows.map(toInsight);
    });
  }

  trace(correlationId: string): Promise<Trace> {
    return this.read('trace', (db) => {
      const events = db
        .prepare('SELECT * FROM events WHERE correlation_id = ? ORDER BY created_at, rowid')
        .all(correlationId) as EventRow[];
      const jobs = db
        .prepare('SELECT * FROM jobs WHERE correlation_id = ? ORDER BY created_at, rowid')
        .all(correlationId) as JobRow[];
      const insights = db
        .prepare('SELECT * FROM insights WHERE correlation_id = ? ORDER BY id')
        .all(correlationId) as InsightRow[];
      return {
        correlationId,
        events: events.map(toEvent),
        jobs: jobs.map(toJob),
        insights: insights.map(toInsight),
      };
    });
  }

  // -- event queries (listEvents) --

  listEvents(filter: EventFilter): Promise<{ events: IonEvent[]; nextCursor: string | null }> {
    return this.attempt('list events', () => {
      const { where, params, limit } = eventQuery(filter, () => '?');
      const rows = this.handle()
        .prepare(`SELECT * FROM events ${where} ORDER BY created_at DESC, event_id DESC LIMIT ?`)
        .all(...params) as EventRow[];
      return eventPage(rows.map(toEvent), limit);
    });
  }

  // -- API tokens -------------------------------------------------------------------------

  createToken(record: TokenRecord): Promise<void> {
    return this.write('create token', (db) => insertToken(db, record));
  }

  findTokenByHash(hash: string): Promise<TokenRecord | null> {
    return this.read('find token', (db) => tokenByHash(db, hash));
  }

  listTokens(): Promise<TokenRecord[]> {
    return this.read('list tokens', allTokens);
  }

  revokeToken(id: string, at: string): Promise<TokenRecord | null> {
    return this.write('revoke token', (db) => revokeToken(db, id, at));
  }

  touchToken(id: string, at: string): Promise<void> {
    return this.write('touch token', (db) => touchToken(db, id, at));
  }

  // -- module admin -----------------------------------------------------------------------

  setModulePaused(name: string, paused: boolean): Promise<ModuleRecord | null> {
    return this.write('set module paused', (db) => {
      const res = db
        .prepare('UPDATE modules SET paused = ?, updated_at = ? WHERE name = ? AND deleted = 0')
        .run(paused ? 1 : 0, nowIso(), name);
      if (res.changes === 0) return null;
      bumpRevision(db);
      return toModule(db.prepare('SELECT * FROM modules WHERE name = ?').get(name) as ModuleRow);
    });
  }

  listModuleVersions(name: string): Promise<ModuleVersion[]> {
    return this.read('list module versions', (db) =>
      (
        db
          .prepare(
            'SELECT version, spec_json, created_at FROM module_versions WHERE name = ? ORDER BY version',
          )
          .all(name) as { version: number; spec_json: string; created_at: string }[]
      ).map((r) => toModuleVersion(r.version, r.spec_json, r.created_at)),
    );
  }

  // -- internals --------------------------------------------------------------------------

  private handle(): Database {
    if (this.db) return this.db;
    throw new UnavailableError(
      `${ADAPTER}: the store is ${this.closed ? 'closed' : 'not started'}`,
    );
  }

  /** Runs `fn` synchronously and turns its result or driver error into a promise. */
  private attempt<T>(action: string, fn: () => T): Promise<T> {
    try {
      return Promise.resolve(fn());
    } catch (err) {
      return Promise.reject(wrapDriverError(ADAPTER, action, err));
    }
  }

  private read<T>(action: string, fn: (db: Database) => T): Promise<T> {
    return this.attempt(action, () => fn(this.handle()));
  }

  /** A write transaction that takes the write lock at BEGIN (see the class comment). */
  private write<T>(action: string, fn: (db: Database) => T): Promise<T> {
    return this.attempt(action, () => {
      const db = this.handle();
      return db.transaction(() => fn(db)).immediate();
    });
  }
}
