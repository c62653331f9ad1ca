import pg from 'pg';
import type { Pool, PoolClient } from 'pg';
import { errorMessage } from '../../core/errors.js';

/**
 * The Postgres document store's connection handling: the pool, and transactions on a checked-out
 * client that always end (commit or rollback) and always give the client back. Internal to the
 * Postgres adapter.
 */

export interface WarnLogger {
  warn(obj: object, msg?: string): void;
}

export interface PoolSettings {
  url: string;
  poolSize: number;
  connectTimeoutMs: number;
  applicationName: string;
}

/** SQLSTATEs after which the whole transaction can simply run again. */
const RETRYABLE_TX_CODES = new Set(['40001' /* serialization_failure */, '40P01' /* deadlock */]);
/** How many times a transaction runs at most when it keeps losing deadlocks. */
export const MAX_TX_TRIES = 3;

/**
 * A pool whose idle-connection failures are logged. Without an 'error' listener, a connection
 * the server drops while idle (restart, admin kill) would crash the process; the pool discards
 * the client and opens a new one on demand.
 */
export function createPool(
  settings: PoolSettings,
  logger: WarnLogger | undefined,
  adapter: string,
): Pool {
  const pool = new pg.Pool({
    connectionString: settings.url,
    max: settings.poolSize,
    connectionTimeoutMillis: settings.connectTimeoutMs,
    application_name: settings.applicationName,
  });
  pool.on('error', (err) => {
    logger?.warn({ err: errorMessage(err) }, `${adapter}: an idle connection failed; replaced`);
  });
  return pool;
}

/**
 * Runs `fn` in one transaction opened with `begin`, and runs it again (from scratch, on a fresh
 * transaction) when it loses a deadlock or a serialisation race, at most {@link MAX_TX_TRIES}
 * times. `fn` must therefore only touch the database.
 */
export async function inTransaction<T>(
  pool: Pool,
  fn: (client: PoolClient) => Promise<T>,
  begin: string,
  logger: WarnLogger | undefined,
  adapter: string,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await once(pool, fn, begin, logger, adapter);
    } catch (err) {
      if (attempt >= MAX_TX_TRIES || !RETRYABLE_TX_CODES.has(sqlState(err))) throw err;
    }
  }
}

async function once<T>(
  pool: Pool,
  fn: (client: PoolClient) => Promise<T>,
  begin: string,
  logger: WarnLogger | undefined,
  adapter: string,
): Promise<T> {
  const client = await pool.connect();
  // A checked-out connection that dies between two statements emits 'error' on the client;
  // the next statement rejects anyway, so the event is only logged.
  const onError = (err: Error): void => {
    logger?.warn({ err: errorMessage(err) }, `${adapter}: a connection failed mid-transaction`);
  };
  client.on('error', onError);
  let broken = false;
  try {
    await client.query(begin);
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {
      broken = true;
    });
    throw err;
  } finally {
    client.off('error', onError);
    // A connection whose rollback failed is in an unknown state: destroy it, never reuse it.
    client.release(broken);
  }
}

function sqlState(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : '';
}
