import type { Database } from 'better-sqlite3';
import { ConflictError } from '../../core/errors.js';
import type { Scope, TokenRecord } from '../../core/tokens.js';

/**
 * The SQLite document store's API-token statements. Internal to the SQLite adapter; only the
 * sha256 hash of a token is ever written.
 */

interface TokenRow {
  id: string;
  name: string;
  scopes: string;
  token_hash: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

function toToken(row: TokenRow): TokenRecord {
  return {
    id: row.id,
    name: row.name,
    scopes: JSON.parse(row.scopes) as Scope[],
    hash: row.token_hash,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at,
    revokedAt: row.revoked_at,
  };
}

export function insertToken(db: Database, record: TokenRecord): void {
  try {
    db.prepare(
      `INSERT INTO api_tokens (id, name, scopes, token_hash, created_at, last_used_at, revoked_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      record.id,
      record.name,
      JSON.stringify(record.scopes),
      record.hash,
      record.createdAt,
      record.lastUsedAt,
      record.revokedAt,
    );
  } catch (err) {
    if ((err as { code?: unknown }).code?.toString().startsWith('SQLITE_CONSTRAINT') === true)
      throw new ConflictError(`a token with id ${record.id} or the same hash exists already`, {
        cause: err,
      });
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
