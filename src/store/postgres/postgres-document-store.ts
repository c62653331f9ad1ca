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
  StoreCapabilities,
  UpsertModuleResult,
} from '../document-store.js';
import type { TokenRecord } from '../../core/tokens.js';
import type { Settlement } from '../../core/trace-settled.js';
import { createPool, inTransaction } from './connection.js';
import type { WarnLogger } from './connection.js';
import { eventRow, insertDeadLetter, tables } from './rows.js';
import type { Ctx, Tables } from './rows.js';
import { migrate } from './schema.js';
import * as deadLetters from './dead-letters.js';
import * as events from './events.js';
import * as jobs from './jobs.js';
import * as modules from './modules.js';
import * as replays from './replays.js';
import * as settlements from './settlements.js';
import * as tokens from './tokens.js';

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
  readonly capabilities: StoreCapabilities = Object.freeze({ sharedAcrossHosts: true });
  private readonly schema: string;
  private readonly t: Tables;
  private readonly tokenTable: string;
  private pool: Pool | null = null;
  private starting: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  private closed = false;

  constructor(private readonly options: PostgresDocumentStoreOptions) {
    this.schema = options.schema ?? 'ion';
    this.t = tables(this.schema); // validates the schema name
    this.tokenTable = tokens.tokensTable(this.schema);
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
    return this.write('upsert module', (ctx) => modules.upsertModule(ctx, this.schema, spec));
  }

  getModule(name: string): Promise<ModuleRecord | null> {
    return this.read('get module', (ctx) => modules.getModule(ctx, name));
  }

  listModules(): Promise<ModuleRecord[]> {
    return this.read('list modules', modules.listModules);
  }

  deleteModule(name: string): Promise<boolean> {
    return this.write('delete module', (ctx) => modules.deleteModule(ctx, name));
  }

  modulesRevision(): Promise<number> {
    return this.read('read modules revision', modules.modulesRevision);
  }

  setModulePaused(name: string, paused: boolean): Promise<ModuleRecord | null> {
    return this.write('set module paused', (ctx) => modules.setModulePaused(ctx, name, paused));
  }

  listModuleVersions(name: string): Promise<ModuleVersion[]> {
    return this.read('list module versions', (ctx) => modules.listModuleVersions(ctx, name));
  }

  // -- events and outbox ------------------------------------------------------------------

  insertRootEvent(event: IonEvent): Promise<{ event: IonEvent; created: boolean }> {
    return this.write('insert root event', (ctx) => events.insertRootEvent(ctx, event));
  }

  getEvent(eventId: string): Promise<IonEvent | null> {
    return this.read('get event', (ctx) => eventRow(ctx, eventId));
  }

  pendingOutbox(limit: number): Promise<OutboxEntry[]> {
    return this.read('read outbox', (ctx) => events.pendingOutbox(ctx, limit));
  }

  markPublished(ids: string[]): Promise<void> {
    return this.read('mark outbox published', (ctx) => events.markPublished(ctx, ids));
  }

  // -- jobs -------------------------------------------------------------------------------

  getJob(jobId: string): Promise<Job | null> {
    return this.read('get job', (ctx) => jobs.getJob(ctx, jobId));
  }

  listJobs(filter: JobFilter = {}): Promise<Job[]> {
    return this.read('list jobs', (ctx) => jobs.listJobs(ctx, filter));
  }

  listAttempts(jobId: string): Promise<Attempt[]> {
    return this.read('list attempts', (ctx) => jobs.listAttempts(ctx, jobId));
  }

  beginAttempt(input: BeginAttemptInput): Promise<BeginAttemptResult> {
    return this.write('begin attempt', (ctx) => jobs.beginAttempt(ctx, input));
  }

  renewAttempt(
    jobId: string,
    attempt: number,
    leaseUntil: string,
    progress?: LogProgress,
  ): Promise<RenewResult> {
    return this.write('renew attempt', (ctx) =>
      jobs.renewAttempt(ctx, jobId, attempt, leaseUntil, progress),
    );
  }

  requestCancel(jobId: string, at: string): Promise<CancelResult | null> {
    return this.write('cancel job', (ctx) => jobs.requestCancel(ctx, jobId, at));
  }

  failAttempt(input: FailAttemptInput): Promise<Job> {
    return this.write('fail attempt', (ctx) => jobs.failAttempt(ctx, input));
  }

  commitAttempt(input: CommitAttemptInput): Promise<Job> {
    return this.write('commit attempt', (ctx) => jobs.commitAttempt(ctx, input));
  }

  // -- settlements (rule and statements in settlements.ts) ---------------------------------

  getSettlement(correlationId: string): Promise<Settlement | null> {
    return this.read('get settlement', (ctx) => settlements.getSettlement(ctx, correlationId));
  }

  openSettlements(limit: number): Promise<Settlement[]> {
    return this.read('list open settlements', (ctx) => settlements.openSettlements(ctx, limit));
  }

  recordSettledEvent(event: IonEvent): Promise<{ created: boolean }> {
    return this.write('record settled event', (ctx) => settlements.recordSettledEvent(ctx, event));
  }

  closeSettlement(correlationId: string): Promise<void> {
    return this.read('close settlement', (ctx) => settlements.closeSettlement(ctx, correlationId));
  }

  // -- dead letters -----------------------------------------------------------------------

  addDeadLetter(entry: DeadLetter): Promise<void> {
    return this.read('add dead letter', (ctx) => insertDeadLetter(ctx, entry));
  }

  listDeadLetters(filter: { module?: string; limit?: number } = {}): Promise<DeadLetter[]> {
    return this.read('list dead letters', (ctx) => deadLetters.listDeadLetters(ctx, filter));
  }

  getDeadLetter(id: string): Promise<DeadLetter | null> {
    return this.read('get dead letter', (ctx) => deadLetters.getDeadLetter(ctx, id));
  }

  redriveDeadLetter(id: string): Promise<Job | null> {
    return this.write('redrive dead letter', (ctx) => deadLetters.redriveDeadLetter(ctx, id));
  }

  discardDeadLetter(id: string): Promise<boolean> {
    return this.read('discard dead letter', (ctx) => deadLetters.discardDeadLetter(ctx, id));
  }

  // -- replays ---------------------------------------------------------------------------

  addReplayJobs(replay: Replay, targets: ReplayTarget[]): Promise<number> {
    return this.write('add replay jobs', (ctx) => replays.addReplayJobs(ctx, replay, targets));
  }

  getReplay(replayId: string): Promise<ReplayStatus | null> {
    return this.read('get replay', (ctx) => replays.getReplay(ctx, replayId));
  }

  listReplays(filter: { module?: string; limit?: number } = {}): Promise<Replay[]> {
    return this.read('list replays', (ctx) => replays.listReplays(ctx, filter));
  }

  // -- queries ----------------------------------------------------------------------------

  listInsights(filter: InsightFilter = {}): Promise<Insight[]> {
    return this.read('list insights', (ctx) => events.listInsights(ctx, filter));
  }

  trace(correlationId: string): Promise<Trace> {
    // One snapshot for the three reads, so a commit landing in between cannot show a job
    // without its events or insights.
    return this.write(
      'trace',
      (ctx) => events.trace(ctx, correlationId),
      'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
    );
  }

  listEvents(filter: EventFilter): Promise<{ events: IonEvent[]; nextCursor: string | null }> {
    return this.read('list events', (ctx) => events.listEvents(ctx, filter));
  }

  // -- API tokens -------------------------------------------------------------------------

  createToken(record: TokenRecord): Promise<void> {
    return this.read('create token', ({ q }) => tokens.insertToken(q, this.tokenTable, record));
  }

  findTokenByHash(hash: string): Promise<TokenRecord | null> {
    return this.read('find token', ({ q }) => tokens.tokenByHash(q, this.tokenTable, hash));
  }

  listTokens(): Promise<TokenRecord[]> {
    return this.read('list tokens', ({ q }) => tokens.allTokens(q, this.tokenTable));
  }

  revokeToken(id: string, at: string): Promise<TokenRecord | null> {
    return this.read('revoke token', ({ q }) => tokens.revokeToken(q, this.tokenTable, id, at));
  }

  touchToken(id: string, at: string): Promise<void> {
    return this.read('touch token', ({ q }) => tokens.touchToken(q, this.tokenTable, id, at));
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
