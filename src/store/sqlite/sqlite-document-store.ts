import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import type { Database } from 'better-sqlite3';
import { UnavailableError, wrapDriverError } from '../../core/errors.js';
import { nowIso } from '../../core/time.js';
import type { StoreCapabilities } from '../document-store.js';
import { ResourceDocumentStore, type StoreMode, type StoreOps } from '../resource-store.js';
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
export class SqliteDocumentStore extends ResourceDocumentStore<Database> {
  /** One file: processes on this host share it, others cannot reach it. */
  readonly capabilities: StoreCapabilities = Object.freeze({ sharedAcrossHosts: false });
  private db: Database | null = null;
  private closed = false;

  protected readonly ops: StoreOps<Database> = {
    ...modules,
    ...events,
    ...jobs,
    ...settlements,
    ...replays,
    ...deadLetters,
    getEvent: eventRow,
    addDeadLetter: insertDeadLetter,
    createToken: tokens.insertToken,
    findTokenByHash: tokens.tokenByHash,
    listTokens: tokens.allTokens,
    revokeToken: tokens.revokeToken,
    touchToken: tokens.touchToken,
  };

  constructor(private readonly options: SqliteDocumentStoreOptions) {
    super();
  }

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

  /**
   * Reads run as they are (a trace's reads too, back to back with no await between them, so
   * nothing in this process commits in between); every change runs in a write transaction
   * that takes the write lock at BEGIN (see the class comment). Every statement here is
   * synchronous.
   */
  protected run<T>(
    mode: StoreMode,
    action: string,
    fn: (db: Database) => T | Promise<T>,
  ): Promise<T> {
    return this.attempt(action, () => {
      const db = this.handle();
      const sync = fn as (db: Database) => T;
      if (mode === 'read' || mode === 'snapshot') return sync(db);
      return db.transaction(() => sync(db)).immediate();
    });
  }
}
