import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import type { Database } from 'better-sqlite3';
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
import { eventRow, insertDeadLetter } from './rows.js';
import { migrate } from './schema.js';
import * as deadLetters from './dead-letters.js';
import * as events from './events.js';
import * as jobs from './jobs.js';
import * as modules from './modules.js';
import * as replays from './replays.js';
import * as settlements from './settlements.js';
import * as tokens from './tokens.js';

const ADAPTER = 'sqlite-store';

export interface SqliteDocumentStoreOptions {
  /** Database file; `:memory:` for a private in-process store. Parent dirs are created. */
  path: string;
}

/**
 * The embedded {@link DocumentStore}: one SQLite file in WAL mode. Every multi-record change
 * runs in a `BEGIN IMMEDIATE` transaction, which takes the write lock up front, so several
 * processes on the same file serialise their writes (waiting up to `busy_timeout`) instead
 * of failing half-way with `SQLITE_BUSY` on lock upgrade. The statements live in one file
 * per resource (`modules.ts`, `events.ts`, `jobs.ts`, `dead-letters.ts`, `replays.ts`,
 * `settlements.ts`, `tokens.ts`); the job lifecycle's rules in core/job-lifecycle.ts.
 */
export class SqliteDocumentStore implements DocumentStore {
  /** One file: processes on this host share it, others cannot reach it. */
  readonly capabilities: StoreCapabilities = Object.freeze({ sharedAcrossHosts: false });
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
    return this.write('upsert module', (db) => modules.upsertModule(db, spec));
  }

  getModule(name: string): Promise<ModuleRecord | null> {
    return this.read('get module', (db) => modules.getModule(db, name));
  }

  listModules(): Promise<ModuleRecord[]> {
    return this.read('list modules', modules.listModules);
  }

  deleteModule(name: string): Promise<boolean> {
    return this.write('delete module', (db) => modules.deleteModule(db, name));
  }

  modulesRevision(): Promise<number> {
    return this.read('read modules revision', modules.modulesRevision);
  }

  setModulePaused(name: string, paused: boolean): Promise<ModuleRecord | null> {
    return this.write('set module paused', (db) => modules.setModulePaused(db, name, paused));
  }

  listModuleVersions(name: string): Promise<ModuleVersion[]> {
    return this.read('list module versions', (db) => modules.listModuleVersions(db, name));
  }

  // -- events and outbox ------------------------------------------------------------------

  insertRootEvent(event: IonEvent): Promise<{ event: IonEvent; created: boolean }> {
    return this.write('insert root event', (db) => events.insertRootEvent(db, event));
  }

  getEvent(eventId: string): Promise<IonEvent | null> {
    return this.read('get event', (db) => eventRow(db, eventId));
  }

  pendingOutbox(limit: number): Promise<OutboxEntry[]> {
    return this.read('read outbox', (db) => events.pendingOutbox(db, limit));
  }

  markPublished(ids: string[]): Promise<void> {
    return this.write('mark outbox published', (db) => events.markPublished(db, ids));
  }

  // -- jobs -------------------------------------------------------------------------------

  getJob(jobId: string): Promise<Job | null> {
    return this.read('get job', (db) => jobs.getJob(db, jobId));
  }

  listJobs(filter: JobFilter = {}): Promise<Job[]> {
    return this.read('list jobs', (db) => jobs.listJobs(db, filter));
  }

  listAttempts(jobId: string): Promise<Attempt[]> {
    return this.read('list attempts', (db) => jobs.listAttempts(db, jobId));
  }

  beginAttempt(input: BeginAttemptInput): Promise<BeginAttemptResult> {
    return this.write('begin attempt', (db) => jobs.beginAttempt(db, input));
  }

  renewAttempt(
    jobId: string,
    attempt: number,
    leaseUntil: string,
    progress?: LogProgress,
  ): Promise<RenewResult> {
    return this.write('renew attempt', (db) =>
      jobs.renewAttempt(db, jobId, attempt, leaseUntil, progress),
    );
  }

  requestCancel(jobId: string, at: string): Promise<CancelResult | null> {
    return this.write('cancel job', (db) => jobs.requestCancel(db, jobId, at));
  }

  failAttempt(input: FailAttemptInput): Promise<Job> {
    return this.write('fail attempt', (db) => jobs.failAttempt(db, input));
  }

  commitAttempt(input: CommitAttemptInput): Promise<Job> {
    return this.write('commit attempt', (db) => jobs.commitAttempt(db, input));
  }

  // -- settlements (rule and statements in settlements.ts) ---------------------------------

  getSettlement(correlationId: string): Promise<Settlement | null> {
    return this.read('get settlement', (db) => settlements.getSettlement(db, correlationId));
  }

  openSettlements(limit: number): Promise<Settlement[]> {
    return this.read('list open settlements', (db) => settlements.openSettlements(db, limit));
  }

  recordSettledEvent(event: IonEvent): Promise<{ created: boolean }> {
    return this.write('record settled event', (db) => settlements.recordSettledEvent(db, event));
  }

  closeSettlement(correlationId: string): Promise<void> {
    return this.write('close settlement', (db) => settlements.closeSettlement(db, correlationId));
  }

  // -- dead letters -----------------------------------------------------------------------

  addDeadLetter(entry: DeadLetter): Promise<void> {
    return this.write('add dead letter', (db) => insertDeadLetter(db, entry));
  }

  listDeadLetters(filter: { module?: string; limit?: number } = {}): Promise<DeadLetter[]> {
    return this.read('list dead letters', (db) => deadLetters.listDeadLetters(db, filter));
  }

  getDeadLetter(id: string): Promise<DeadLetter | null> {
    return this.read('get dead letter', (db) => deadLetters.getDeadLetter(db, id));
  }

  redriveDeadLetter(id: string): Promise<Job | null> {
    return this.write('redrive dead letter', (db) => deadLetters.redriveDeadLetter(db, id));
  }

  discardDeadLetter(id: string): Promise<boolean> {
    return this.write('discard dead letter', (db) => deadLetters.discardDeadLetter(db, id));
  }

  // -- replays ---------------------------------------------------------------------------

  addReplayJobs(replay: Replay, targets: ReplayTarget[]): Promise<number> {
    return this.write('add replay jobs', (db) => replays.addReplayJobs(db, replay, targets));
  }

  getReplay(replayId: string): Promise<ReplayStatus | null> {
    return this.read('get replay', (db) => replays.getReplay(db, replayId));
  }

  listReplays(filter: { module?: string; limit?: number } = {}): Promise<Replay[]> {
    return this.read('list replays', (db) => replays.listReplays(db, filter));
  }

  // -- queries ----------------------------------------------------------------------------

  listInsights(filter: InsightFilter = {}): Promise<Insight[]> {
    return this.read('list insights', (db) => events.listInsights(db, filter));
  }

  trace(correlationId: string): Promise<Trace> {
    return this.read('trace', (db) => events.trace(db, correlationId));
  }

  listEvents(filter: EventFilter): Promise<{ events: IonEvent[]; nextCursor: string | null }> {
    return this.read('list events', (db) => events.listEvents(db, filter));
  }

  // -- API tokens -------------------------------------------------------------------------

  createToken(record: TokenRecord): Promise<void> {
    return this.write('create token', (db) => tokens.insertToken(db, record));
  }

  findTokenByHash(hash: string): Promise<TokenRecord | null> {
    return this.read('find token', (db) => tokens.tokenByHash(db, hash));
  }

  listTokens(): Promise<TokenRecord[]> {
    return this.read('list tokens', tokens.allTokens);
  }

  revokeToken(id: string, at: string): Promise<TokenRecord | null> {
    return this.write('revoke token', (db) => tokens.revokeToken(db, id, at));
  }

  touchToken(id: string, at: string): Promise<void> {
    return this.write('touch token', (db) => tokens.touchToken(db, id, at));
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
