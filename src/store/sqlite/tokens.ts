import type { Database } from 'better-sqlite3';
import {
  TOKEN_COLUMNS,
  tokenConflict,
  tokenFromRow,
  tokenInsertValues,
  type DecodedTokenRow,
} from '../token-rows.js';
import type { Scope, TokenRecord } from '../../core/tokens.js';

/**
 * The SQLite document store's API-token statements. Internal to the SQLite adapter; only the
 * sha256 hash of a token is ever written.
 */

type TokenRow = Omit<DecodedTokenRow, 'scopes'> & { scopes: string };

function toToken(row: TokenRow): TokenRecord {
  return tokenFromRow({ ...row, scopes: JSON.parse(row.scopes) as Scope[] });
}

export function insertToken(db: Database, record: TokenRecord): void {
  try {
    db.prepare(`INSERT INTO api_tokens (${TOKEN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)`).run(
      tokenInsertValues(record),
    );
  } catch (err) {
    if ((err as { code?: unknown }).code?.toString().startsWith('SQLITE_CONSTRAINT') === true)
      throw tokenConflict(record, err);
    throw err;
  }
}

export function tokenByHash(db: Database, hash: string): TokenRecord | null {
  const row = db.prepare('SELECT * FROM api_tokens WHERE token_hash = ?').get(hash) as
    TokenRow | undefined;
  return row ? toToken(row) : null;
}

export function allTokens(db: Database): TokenRecord[] {
  return (
    db.prepare('SELECT * FROM api_tokens ORDER BY created_at, rowid').all() as TokenRow[]
  ).map(toToken);
}

export function revokeToken(db: Database, id: string, at: string): TokenRecord | null {
  db.prepare('UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL').run(
    at,
    id,
  );
  const row = db.prepare('SELECT * FROM api_tokens WHERE id = ?').get(id) as TokenRow | undefined;
  return row ? toToken(row) : null;
}

export function touchToken(db: Database, id: string, at: string): void {
  db.prepare('UPDATE api_tokens SET last_used_at = ? WHERE id = ?').run(at, id);
}
