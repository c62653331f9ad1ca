import type { Pool } from 'pg';
import { UnavailableError, wrapDriverError } from '../../core/errors.js';
import { nowIso } from '../../core/time.js';
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
import { createPool, inTransaction } from './connection.js';
import type { WarnLogger } from './connection.js';
import {
  beginAttempt,
  commitAttempt,
  failAttempt,
  redriveDeadLetter,
  renewAttempt,
  requestCancel,
} from './jobs.js';
import { addReplayJobs, getReplay, listReplays } from './replays.js';
import {
  closeSettlement,
  getSettlement,
  openSettlements,
  recordSettledEvent,
} from './settlements.js';
import type { Settlement } from '../../core/trace-settled.js';
import {
  bumpRevision,
  canonicalSpec,
  conditions,
  eventRow,
  insertDeadLetter,
  insertEventIfAbsent,
  insertOutbox,
  jobRow,
  tables,
  toAttempt,
  toDeadLetter,
  toEvent,
  toInsight,
  toJob,
  toModule,
  writeModuleVersion,
} from './rows.js';
import type {
  AttemptRow,
  Ctx,
  DeadLetterRow,
  EventRow,
  InsightRow,
  JobRow,
  ModuleRow,
  OutboxRow,
  Tables,
} from './rows.js';
import { migrate } from './schema.js';
import { eventPage, eventQuery, insightExtraConditions } from '../event-cursor.js';
import { toModuleVersion } from '../module-version.js';
import {
  allTokens,
  insertToken,
  revokeToken,
  tokenByHash,
  tokensTable,
  touchToken,
} from './tokens.js';
import type { TokenRecord } from '../../core/tokens.js';

const ADAPTER = 'postgres-store';

export interface PostgresDocumentStoreOptions {
  /** Connection URL, e.g. `postgres://user@host:5432/db`. Never logged (it may hold a password). */
  url: string;
  /** Schema holding Ion's tables; created on start when absent. Default `ion`. */
  schema?: string;
  /** Most connections the pool opens. Default 10. */
  poolSize?: number;
  /** How long to wait for a connection before failing with `unavailable`. Default 10 000. */
  connectTimeoutMs?: number;
  /** Shown in `pg_stat_activity`, so operators can tell Ion's connections apart. Default `ion`. */
  applicationName?: string;
  /** Told about connections that fail while idle (the pool replaces them). */
  logger?: WarnLogger;
}

/**
 * The {@link DocumentStore} on PostgreSQL, for several Ion servers and workers sharing one
 * database. Every multi-record change runs in one `READ COMMITTED` transaction on a pooled
 * connection; races between workers are settled by row locks, never by reading then writing
 * unguarded:
 * - a job's writers (begin, fail, commit, redrive) lock its row (`FOR UPDATE`, or the
 *   conflicting `INSERT ... ON CONFLICT` that waits for the other inserter), so concurrent
 *   attempts of one job get distinct, consecutive numbers;
 * - events are inserted with `ON CONFLICT DO NOTHING`, and an outbox row is written only by the
 *   transaction whose insert won, so a child event is published once however many commits race;
 * - upserts of one module serialise on a transaction-level advisory lock keyed on its name.
 * A transaction that loses a deadlock is run again (see `inTransaction`).
 * The outbox may hand one row to two relays at once; delivery is at-least-once by design.
 */
export class PostgresDocumentStore implements DocumentStore {
  private readonly schema: string;
  private readonly t: Tables;
  private readonly tokens: string;
  private pool: Pool | null = null;
  private starting: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  private closed = false;

  constructor(private readonly options: PostgresDocumentStoreOptions) {
    this.schema = options.schema ?? 'ion';
    this.t = tables(this.schema); // validates the schema name
    this.tokens = tokensTable(this.schema);
  }

  start(): Promise<void> {
    if (this.pool) return Promise.resolve();
    this.starting ??= this.open().finally(() => {
      this.starting = null;
    });
    return this.starting;
  }

  async close(): Promise<void> {
    await this.starting?.catch(() => undefined);
    this.closed = true;
    const pool = this.pool;
    this.pool = null;
    if (pool) this.closing = pool.end().catch(() => undefined);
    await this.closing;
  }

  // -- modules ----------------------------------------------------------------------------

  upsertModule(spec: ModuleSpec): Promise<UpsertModuleResult> {
    return this.write('upsert module', async (ctx) => {
      const { q, t } = ctx;
      const specJson = canonicalSpec(spec);
      const now = nowIso();
      // Two first upserts of one name would both see no row: serialise them on the name.
      await q.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [
        `ion.document-store.module:${this.schema}:${spec.name}`,
      ]);
      const { rows } = await q.query<ModuleRow>(
        `SELECT * FROM ${t.modules} WHERE name = $1 FOR UPDATE`,
        [spec.name],
      );
      const row = rows[0];
      if (row && !row.deleted && row.spec_json === specJson) {
        return { module: toModule(row), change: 'unchanged' as const };
      }
      const version = row ? row.version + 1 : 1;
      const stored = await writeModuleVersion(ctx, spec, version, specJson, now);
      await bumpRevision(ctx);
      // A module revived after a delete is reported as created: it was absent a moment ago.
      const change = row && !row.deleted ? ('updated' as const) : ('created' as const);
      return { module: toModule(stored), change };
    });
  }

  getModule(name: string): Promise<ModuleRecord | null> {
    return this.read('get module', async ({ q, t }) => {
      const { rows } = await q.query<ModuleRow>(
        `SELECT * FROM ${t.modules} WHERE name = $1 AND NOT deleted`,
        [name],
      );
      return rows[0] ? toModule(rows[0]) : null;
    });
  }

  listModules(): Promise<ModuleRecord[]> {
    return this.read('list modules', async ({ q, t }) => {
      const { rows } = await q.query<ModuleRow>(
        `SELECT * FROM ${t.modules} WHERE NOT deleted ORDER BY name COLLATE "C"`,
      );
      return rows.map(toModule);
    });
  }

  deleteModule(name: string): Promise<boolean> {
    return this.write('delete module', async (ctx) => {
      const res = await ctx.q.query(
        `UPDATE ${ctx.t.modules} SET deleted = true, updated_at = $1
         WHERE name = $2 AND NOT deleted`,
        [nowIso(), name],
      );
      if (!res.rowCount) return false;
      await bumpRevision(ctx);
      return true;
    });
  }

  modulesRevision(): Promise<number> {
    return this.read('read modules revision', async ({ q, t }) => {
      const { rows } = await q.query<{ revision: string }>(
        `SELECT revision FROM ${t.modulesRevision} WHERE id = 1`,
      );
      return Number(rows[0]?.revision ?? 0);
    });
  }

  // -- events -----------------------------------------------------------------------------

  insertRootEvent(event: IonEvent): Promise<{ event: IonEvent; created: boolean }> {
    return this.write('insert root event', async (ctx) => {
      const created = await insertEventIfAbsent(ctx, event);
      if (created) await insertOutbox(ctx, event.eventId, null, event.createdAt);
      return { event: (await eventRow(ctx, event.eventId)) ?? event, created };
    });
  }

  getEvent(eventId: string): Promise<IonEvent | null> {
    return this.read('get event', (ctx) => eventRow(ctx, eventId));
  }

  // -- jobs -------------------------------------------------------------------------------

  getJob(jobId: string): Promise<Job | null> {
    return this.read('get job', async (ctx) => {
      const row = await jobRow(ctx, jobId);
      return row ? toJob(row) : null;
    });
  }

  listJobs(filter: JobFilter = {}): Promise<Job[]> {
    return this.read('list jobs', async ({ q, t }) => {
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
      const { rows } = await q.query<JobRow>(
        `SELECT * FROM ${t.jobs} ${where} ORDER BY updated_at DESC, seq DESC
         LIMIT $${params.length + 1}`,
        [...params, filter.limit ?? 100],
      );
      return rows.map(toJob);
    });
  }

  listAttempts(jobId: string): Promise<Attempt[]> {
    return this.read('list attempts', async ({ q, t }) => {
      const { rows } = await q.query<AttemptRow>(
        `SELECT * FROM ${t.attempts} WHERE job_id = $1 ORDER BY attempt`,
        [jobId],
      );
      return rows.map(toAttempt);
    });
  }

  beginAttempt(input: BeginAttemptInput): Promise<BeginAttemptResult> {
    return this.write('begin attempt', (ctx) => beginAttempt(ctx, input));
  }

  renewAttempt(
    jobId: string,
    attempt: number,
    leaseUntil: string,
    progress?: LogProgress,
  ): Promise<RenewResult> {
    return this.write('renew attempt', (ctx) =>
      renewAttempt(ctx, jobId, attempt, leaseUntil, progress),
    );
  }

  requestCancel(jobId: string, at: string): Promise<CancelResult | null> {
    return this.write('cancel job', (ctx) => requestCancel(ctx, jobId, at));
  }

  failAttempt(input: FailAttemptInput): Promise<Job> {
    return this.write('fail attempt', (ctx) => failAttempt(ctx, input));
  }

  commitAttempt(input: CommitAttemptInput): Promise<Job> {
    return this.write('commit attempt', (ctx) => commitAttempt(ctx, input));
  }

  // -- outbox -----------------------------------------------------------------------------

  pendingOutbox(limit: number): Promise<OutboxEntry[]> {
    return this.read('read outbox', async ({ q, t }) => {
      const { rows } = await q.query<OutboxRow>(
        `SELECT o.id, o.event_id, e.type, e.correlation_id, o.subscription, o.job_id
         FROM ${t.outbox} o JOIN ${t.events} e ON e.event_id = o.event_id
         WHERE o.published_at IS NULL ORDER BY o.id LIMIT $1`,
        [limit],
      );
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
    return this.read('mark outbox published', async ({ q, t }) => {
      // Ids are ours (decimal bigints); anything else names no row and is skipped.
      const valid = ids.filter((id) => /^[0-9]{1,18}$/.test(id));
      if (valid.length === 0) return;
      await q.query(
        `UPDATE ${t.outbox} SET published_at = $1
         WHERE id = ANY($2::bigint[]) AND published_at IS NULL`,
        [nowIso(), valid],
      );
    });
  }

  // -- settlements (rule and statements in settlements.ts) ---------------------------------

  getSettlement(correlationId: string): Promise<Settlement | null> {
    return this.read('get settlement', (ctx) => getSettlement(ctx, correlationId));
  }

  openSettlements(limit: number): Promise<Settlement[]> {
    return this.read('list open settlements', (ctx) => openSettlements(ctx, limit));
  }

  recordSettledEvent(event: IonEvent): Promise<{ created: boolean }> {
    return this.write('record settled event', (ctx) => recordSettledEvent(ctx, event));
  }

  closeSettlement(correlationId: string): Promise<void> {
    return this.read('close settlement', (ctx) => closeSettlement(ctx, correlationId));
  }

  // -- dead letters -----------------------------------------------------------------------

  addDeadLetter(entry: DeadLetter): Promise<void> {
    return this.read('add dead letter', (ctx) => insertDeadLetter(ctx, entry));
  }

  listDeadLetters(filter: { module?: string; limit?: number } = {}): Promise<DeadLetter[]> {
    return this.read('list dead letters', async ({ q, t }) => {
      const { where, params } = conditions({ module: filter.module });
      const { rows } = await q.query<DeadLetterRow>(
        `SELECT * FROM ${t.deadLetters} ${where} ORDER BY created_at DESC, seq DESC
         LIMIT $${params.length + 1}`,
        [...params, filter.limit ?? 100],
      );
      return rows.map(toDeadLetter);
    });
  }

  getDeadLetter(id: string): Promise<DeadLetter | null> {
    return this.read('get dead letter', async ({ q, t }) => {
      const { rows } = await q.query<DeadLetterRow>(
        `SELECT * FROM ${t.deadLetters} WHERE id = $1`,
        [id],
      );
      return rows[0] ? toDeadLetter(rows[0]) : null;
    });
  }

  redriveDeadLetter(id: string): Promise<Job | null> {
    return this.write('redrive dead letter', (ctx) => redriveDeadLetter(ctx, id));
  }

  // -- replays ---------------------------------------------------------------------------

  addReplayJobs(replay: Replay, targets: ReplayTarget[]): Promise<number> {
    return this.write('add replay jobs', (ctx) => addReplayJobs(ctx, replay, targets));
  }

  getReplay(replayId: string): Promise<ReplayStatus | null> {
    return this.read('get replay', (ctx) => getReplay(ctx, replayId));
  }

  listReplays(filter: { module?: string; limit?: number } = {}): Promise<Replay[]> {
    return this.read('list replays', (ctx) => listReplays(ctx, filter));
  }

  discardDeadLetter(id: string): Promise<boolean> {
    return this.read('discard dead letter', async ({ q, t }) => {
      const res = await q.query(`DELETE FROM ${t.deadLetters} WHERE id = $1`, [id]);
      return (res.rowCount ?? 0) > 0;
    });
  }

  // -- queries ----------------------------------------------------------------------------

  listInsights(filter: InsightFilter = {}): Promise<Insight[]> {
    return this.read('list insights', async ({ q, t }) => {
      const base = conditions({
        module: filter.module,
        key: filter.key,
        value: filter.value,
        correlation_id: filter.correlationId,
        job_id: filter.jobId,
      });
      const extra = insightExtraConditions(
        filter,
        base.params.length + 1,
        (n) => `$${n}`,
        false,
        t.insights,
      );
      const where = [base.where.replace(/^WHERE /, ''), ...extra.cols].filter(Boolean);
      const params = [...base.params, ...extra.params];
      const { rows } = await q.query<InsightRow>(
        `SELECT * FROM ${t.insights} ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY id LIMIT $${params.length + 1}`,
        [...params, filter.limit ?? 1000],
      );
      return rows.map(toInsight);
    });
  }

  trace(correlationId: string): Promise<Trace> {
    // One snapshot for the three reads, so a commit landing in between cannot show a job
    // without its events or insights.
    return this.write(
      'trace',
      async ({ q, t }) => {
        const events = await q.query<EventRow>(
          `SELECT * FROM ${t.events} WHERE correlation_id = $1 ORDER BY created_at, seq`,
          [correlationId],
        );
        const jobs = await q.query<JobRow>(
          `SELECT * FROM ${t.jobs} WHERE correlation_id = $1 ORDER BY created_at, seq`,
          [correlationId],
        );
        const insights = await q.query<InsightRow>(
          `SELECT * FROM ${t.insights} WHERE correlation_id = $1 ORDER BY id`,
          [correlationId],
        );
        return {
          correlationId,
          events: events.rows.map(toEvent),
          jobs: jobs.rows.map(toJob),
          insights: insights.rows.map(toInsight),
        };
      },
      'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
    );
  }

  // -- event queries (listEvents) --

  listEvents(filter: EventFilter): Promise<{ events: IonEvent[]; nextCursor: string | null }> {
    return this.read('list events', async ({ q, t }) => {
      const { where, params, limit } = eventQuery(filter, (n) => `$${n}`);
      const { rows } = await q.query<EventRow>(
        `SELECT * FROM ${t.events} ${where} ORDER BY created_at DESC, event_id DESC LIMIT $${params.length}`,
        params,
      );
      return eventPage(rows.map(toEvent), limit);
    });
  }

  // -- API tokens -------------------------------------------------------------------------

  createToken(record: TokenRecord): Promise<void> {
    return this.read('create token', ({ q }) => insertToken(q, this.tokens, record));
  }

  findTokenByHash(hash: string): Promise<TokenRecord | null> {
    return this.read('find token', ({ q }) => tokenByHash(q, this.tokens, hash));
  }

  listTokens(): Promise<TokenRecord[]> {
    return this.read('list tokens', ({ q }) => allTokens(q, this.tokens));
  }

  revokeToken(id: string, at: string): Promise<TokenRecord | null> {
    return this.read('revoke token', ({ q }) => revokeToken(q, this.tokens, id, at));
  }

  touchToken(id: string, at: string): Promise<void> {
    return this.read('touch token', ({ q }) => touchToken(q, this.tokens, id, at));
  }

  // -- module admin -----------------------------------------------------------------------

  setModulePaused(name: string, paused: boolean): Promise<ModuleRecord | null> {
    return this.write('set module paused', async (ctx) => {
      const { rows } = await ctx.q.query<ModuleRow>(
        `UPDATE ${ctx.t.modules} SET paused = $1, updated_at = $2
         WHERE name = $3 AND NOT deleted RETURNING *`,
        [paused, nowIso(), name],
      );
      if (!rows[0]) return null;
      await bumpRevision(ctx);
      return toModule(rows[0]);
    });
  }

  listModuleVersions(name: string): Promise<ModuleVersion[]> {
    return this.read('list module versions', async ({ q, t }) => {
      const { rows } = await q.query<{ version: number; spec_json: string; created_at: string }>(
        `SELECT version, spec_json, created_at FROM ${t.moduleVersions}
         WHERE name = $1 ORDER BY version`,
        [name],
      );
      return rows.map((r) => toModuleVersion(r.version, r.spec_json, r.created_at));
    });
  }

  // -- internals --------------------------------------------------------------------------

  private async open(): Promise<void> {
    const pool = createPool(
      {
        url: this.options.url,
        poolSize: this.options.poolSize ?? 10,
        connectTimeoutMs: this.options.connectTimeoutMs ?? 10_000,
        applicationName: this.options.applicationName ?? 'ion',
      },
      this.options.logger,
      ADAPTER,
    );
    try {
      const client = await pool.connect();
      let broken = false;
      try {
        await migrate(client, this.schema, nowIso());
      } catch (err) {
        broken = true;
        throw err;
      } finally {
        client.release(broken);
      }
    } catch (err) {
      await pool.end().catch(() => undefined);
      throw wrapDriverError(ADAPTER, 'start', err);
    }
    this.pool = pool;
    this.closed = false;
    this.closing = null;
  }

  private handle(): Pool {
    if (this.pool) return this.pool;
    throw new UnavailableError(
      `${ADAPTER}: the store is ${this.closed ? 'closed' : 'not started'}`,
    );
  }

  /** A single statement (or independent reads) on any pooled connection. */
  private async read<T>(action: string, fn: (ctx: Ctx) => Promise<T>): Promise<T> {
    try {
      return await fn({ q: this.handle(), t: this.t });
    } catch (err) {
      throw wrapDriverError(ADAPTER, action, err);
    }
  }

  /** `fn` in one transaction (see {@link inTransaction}); driver errors wrapped. */
  private async write<T>(
    action: string,
    fn: (ctx: Ctx) => Promise<T>,
    begin = 'BEGIN',
  ): Promise<T> {
    try {
      return await inTransaction(
        this.handle(),
        (client) => fn({ q: client, t: this.t }),
        begin,
        this.options.logger,
        ADAPTER,
      );
    } catch (err) {
      throw wrapDriverError(ADAPTER, action, err);
    }
  }
}
