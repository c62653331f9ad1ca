import type { TokenRecord } from '../../core/tokens.js';
import {
  TOKEN_COLUMNS,
  tokenConflict,
  tokenFromRow,
  tokenInsertValues,
  type DecodedTokenRow,
} from '../token-rows.js';
import type { Queryable } from './rows.js';
import { quoteSchema } from './schema.js';

/**
 * The Postgres document store's API-token statements. Internal to the Postgres adapter; only
 * the sha256 hash of a token is ever written.
 */

type TokenRow = DecodedTokenRow;

/** The schema-qualified token table (the schema name is validated by `quoteSchema`). */
export function tokensTable(schema: string): string {
  return `${quoteSchema(schema)}.api_tokens`;
}

const toToken = tokenFromRow;

export async function insertToken(q: Queryable, table: string, record: TokenRecord): Promise<void> {
  try {
    await q.query(
      `INSERT INTO ${table} (${TOKEN_COLUMNS}) VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7)`,
      tokenInsertValues(record),
    );
  } catch (err) {
    if ((err as { code?: unknown }).code === '23505' /* unique_violation */)
      throw tokenConflict(record, err);
    throw err;
  }
}

export async function tokenByHash(
  q: Queryable,
  table: string,
  hash: string,
): Promise<TokenRecord | null> {
  const { rows } = await q.query<TokenRow>(`SELECT * FROM ${table} WHERE token_hash = $1`, [hash]);
  return rows[0] ? toToken(rows[0]) : null;
}

export async function allTokens(q: Queryable, table: string): Promise<TokenRecord[]> {
  const { rows } = await q.query<TokenRow>(`SELECT * FROM ${table} ORDER BY created_at, seq`);
  return rows.map(toToken);
}

export async function revokeToken(
  q: Queryable,
  table: string,
  id: string,
  at: string,
): Promise<TokenRecord | null> {
  // One statement: the first revocation's time is kept, and the row comes back either way.
  const { rows } = await q.query<TokenRow>(
    `UPDATE ${table} SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING *`,
    [id, at],
  );
  return rows[0] ? toToken(rows[0]) : null;
}

export async function touchToken(
  q: Queryable,
  table: string,
  id: string,
  at: string,
): Promise<void> {
  await q.query(`UPDATE ${table} SET last_used_at = $2 WHERE id = $1`, [id, at]);
}
