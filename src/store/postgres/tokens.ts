import { ConflictError } from '../../core/errors.js';
import type { Scope, TokenRecord } from '../../core/tokens.js';
import type { Queryable } from './rows.js';
import { quoteSchema } from './schema.js';

/**
 * The Postgres document store's API-token statements. Internal to the Postgres adapter; only
 * the sha256 hash of a token is ever written.
 */

interface TokenRow {
  id: string;
  name: string;
  scopes: Scope[];
  token_hash: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

/** The schema-qualified token table (the schema name is validated by `quoteSchema`). */
export function tokensTable(schema: string): string {
  return `${quoteSchema(schema)}.api_tokens`;
}

function toToken(row: TokenRow): TokenRecord {
  return {
    id: row.id,
    name: row.name,
    scopes: row.scopes,
    hash: row.token_hash,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    revokedAt: row.revoked_at,
  };
}

export async function insertToken(q: Queryable, table: string, record: TokenRecord): Promise<void> {
  try {
    await q.query(
      `INSERT INTO ${table} (id, name, scopes, token_hash, created_at, last_used_at, revoked_at)
       VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7)`,
      [
        record.id,
        record.name,
        JSON.stringify(record.scopes),
        record.hash,
        record.createdAt,
        record.lastUsedAt,
        record.revokedAt,
      ],
    );
  } catch (err) {
    if ((err as { code?: unknown }).code === '23505' /* unique_violation */)
      throw new ConflictError(`a token with id ${record.id} or the same hash exists already`, {
        cause: err,
      });
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
