import { ConflictError } from '../core/errors.js';
import type { Scope, TokenRecord } from '../core/tokens.js';

/**
 * The API-token row both document-store adapters keep (only the token's sha256 hash), with
 * its scopes decoded; the SQLite adapter parses its text column first.
 */
export interface DecodedTokenRow {
  id: string;
  name: string;
  scopes: Scope[];
  token_hash: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

export function tokenFromRow(row: DecodedTokenRow): TokenRecord {
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

/** The columns of `INSERT INTO api_tokens (...)`, in order; scopes as JSON text. */
export const TOKEN_COLUMNS = 'id, name, scopes, token_hash, created_at, last_used_at, revoked_at';

/** The values of {@link TOKEN_COLUMNS} for a new token. */
export function tokenInsertValues(record: TokenRecord): (string | null)[] {
  return [
    record.id,
    record.name,
    JSON.stringify(record.scopes),
    record.hash,
    record.createdAt,
    record.lastUsedAt,
    record.revokedAt,
  ];
}

/** The one wording of a token whose id or hash is taken (the driver's error kept as cause). */
export function tokenConflict(record: TokenRecord, cause: unknown): ConflictError {
  return new ConflictError(`a token with id ${record.id} or the same hash exists already`, {
    cause,
  });
}
