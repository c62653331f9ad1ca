import type { Pool } from 'pg';
import { UnavailableError, wrapDriverError } from '../../core/errors.js';
import { nowIso } from '../../core/time.js';
import type { StoreCapabilities } from '../document-store.js';
import { ResourceDocumentStore, type StoreMode, type StoreOps } from '../resource-store.js';
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
export class PostgresDocumentStore extends ResourceDocumentStore<Ctx> {
  readonly capabilities: StoreCapabilities = Object.freeze({ sharedAcrossHosts: true });
  private readonly schema: string;
  private readonly t: Tables;
  protected readonly ops: StoreOps<Ctx>;
  private pool: Pool | null = null;
  private starting: Promise<void> | null = null;
  private closing: Promise<void> | null = null;
  private closed = false;

  constructor(private readonly options: PostgresDocumentStoreOptions) {
    super();
    this.schema = options.schema ?? 'ion';
    this.t = tables(this.schema); // validates the schema name
    const table = tokens.tokensTable(this.schema);
    this.ops = {
      ...modules,
      ...events,
      ...jobs,
      ...settlements,
      ...replays,
      ...deadLetters,
      upsertModule: (ctx, spec) => modules.upsertModule(ctx, this.schema, spec),
      getEvent: eventRow,
      addDeadLetter: insertDeadLetter,
      createToken: ({ q }, record) => tokens.insertToken(q, table, record),
      findTokenByHash: ({ q }, hash) => tokens.tokenByHash(q, table, hash),
      listTokens: ({ q }) => tokens.allTokens(q, table),
      revokeToken: ({ q }, id, at) => tokens.revokeToken(q, table, id, at),
      touchToken: ({ q }, id, at) => tokens.touchToken(q, table, id, at),
    };
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

  /**
   * Reads and one-statement changes run on any pooled connection; a `write` runs in one
   * transaction, a `snapshot` in one REPEATABLE READ READ ONLY transaction, so a commit
   * landing between a trace's reads cannot show a job without its events or insights (see
   * {@link inTransaction}). Driver errors are wrapped.
   */
  protected async run<T>(
    mode: StoreMode,
    action: string,
    fn: (ctx: Ctx) => T | Promise<T>,
  ): Promise<T> {
    try {
      if (mode === 'read' || mode === 'statement') return await fn({ q: this.handle(), t: this.t });
      return await inTransaction(
        this.handle(),
        async (client) => fn({ q: client, t: this.t }),
        mode === 'snapshot' ? 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY' : 'BEGIN',
        this.options.logger,
        ADAPTER,
      );
    } catch (err) {
      throw wrapDriverError(ADAPTER, action, err);
    }
  }
}
