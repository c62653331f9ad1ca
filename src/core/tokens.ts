import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { NotFoundError, ValidationError } from './errors.js';
import { newId } from './ids.js';
import { nowIso } from './time.js';

/**
 * API tokens: what they look like, how they are hashed, and the operations on them. A token's
 * value (`ion_` + 32 random bytes, base64url) is returned once, at creation; only its sha256
 * hash is stored, so a leaked database does not leak usable tokens.
 */

/** `admin` may do everything; `publish` may feed events and blobs in; `read` may look. */
export const SCOPES = ['admin', 'publish', 'read'] as const;
export type Scope = (typeof SCOPES)[number];

export const TOKEN_PREFIX = 'ion_';
/** `ion_` followed by 43 base64url characters (32 bytes). Anything else is not ours. */
const TOKEN_SHAPE = /^ion_[A-Za-z0-9_-]{43}$/;

/** A stored token: everything but its value. */
export interface TokenRecord {
  id: string;
  name: string;
  scopes: Scope[];
  /** Hex sha256 of the token value. */
  hash: string;
  createdAt: string;
  lastUsedAt: string | null;
  revokedAt: string | null;
}

/** A token as shown to people and programs: never its value, never its hash. */
export type TokenView = Omit<TokenRecord, 'hash'>;

/** The storage a {@link TokenService} needs; the DocumentStore port provides it. */
export interface TokenRepository {
  /** Stores a new token. */
  createToken(record: TokenRecord): Promise<void>;
  /** The token with this hash, revoked or not; null when none. */
  findTokenByHash(hash: string): Promise<TokenRecord | null>;
  /** Every token, revoked ones included, oldest first. */
  listTokens(): Promise<TokenRecord[]>;
  /**
   * Marks a token revoked at `at` (a token revoked before keeps its first `revokedAt`).
   * Returns the token, or null when absent.
   */
  revokeToken(id: string, at: string): Promise<TokenRecord | null>;
  /** Records that the token was used at `at`. */
  touchToken(id: string, at: string): Promise<void>;
}

/** A fresh token value: `ion_` + 32 random bytes, base64url. */
export function generateTokenValue(): string {
  return `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
}

/** The stored form of a token value: hex sha256. */
export function hashToken(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex');
}

/** Whether a token holding `granted` may do what `needed` guards; `admin` implies every scope. */
export function scopeAllows(granted: readonly Scope[], needed: Scope): boolean {
  return granted.includes('admin') || granted.includes(needed);
}

/** Parses `admin,read` (as typed on a command line) into scopes, or throws naming the bad one. */
export function parseScopes(text: string | readonly string[]): Scope[] {
  const parts = (typeof text === 'string' ? text.split(',') : [...text])
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (parts.length === 0)
    throw new ValidationError(`give at least one scope (${SCOPES.join(', ')})`, [
      { path: 'scopes', message: 'empty' },
    ]);
  const scopes: Scope[] = [];
  for (const part of parts) {
    if (!(SCOPES as readonly string[]).includes(part))
      throw new ValidationError(`unknown scope "${part}": use ${SCOPES.join(', ')}`, [
        { path: 'scopes', message: `unknown scope "${part}"` },
      ]);
    if (!scopes.includes(part as Scope)) scopes.push(part as Scope);
  }
  return scopes;
}

export function tokenView(record: TokenRecord): TokenView {
  const { hash: _hash, ...view } = record;
  return view;
}

/** How long a token's `lastUsedAt` may lag: at most one write per token per minute. */
const TOUCH_INTERVAL_MS = 60_000;

/** Creates, lists, revokes and checks tokens over a {@link TokenRepository}. */
export class TokenService {
  constructor(private readonly repo: TokenRepository) {}

  /** Creates a token. The value is in the result and nowhere else: show it once. */
  async create(input: {
    name: string;
    scopes: readonly string[] | string;
  }): Promise<{ token: string; record: TokenView }> {
    const name = input.name.trim();
    if (name === '' || name.length > 200)
      throw new ValidationError('a token needs a name of 1 to 200 characters', [
        { path: 'name', message: 'invalid name' },
      ]);
    const token = generateTokenValue();
    const record: TokenRecord = {
      id: newId(),
      name,
      scopes: parseScopes(input.scopes),
      hash: hashToken(token),
      createdAt: nowIso(),
      lastUsedAt: null,
      revokedAt: null,
    };
    await this.repo.createToken(record);
    return { token, record: tokenView(record) };
  }

  async list(): Promise<TokenView[]> {
    return (await this.repo.listTokens()).map(tokenView);
  }

  async revoke(id: string): Promise<TokenView> {
    const record = await this.repo.revokeToken(id, nowIso());
    if (record === null) throw new NotFoundError(`token ${id} does not exist`);
    return tokenView(record);
  }

  /**
   * The live token a presented value stands for, or null (unknown, malformed or revoked). The
   * lookup is by hash; the stored hash is compared again in constant time.
   */
  async authenticate(value: string): Promise<TokenView | null> {
    if (!TOKEN_SHAPE.test(value)) return null;
    const hash = hashToken(value);
    const record = await this.repo.findTokenByHash(hash);
    if (record === null || record.revokedAt !== null) return null;
    if (!timingSafeEqual(Buffer.from(record.hash, 'hex'), Buffer.from(hash, 'hex'))) return null;
    const now = Date.now();
    if (record.lastUsedAt === null || now - Date.parse(record.lastUsedAt) > TOUCH_INTERVAL_MS) {
      await this.repo.touchToken(record.id, new Date(now).toISOString());
    }
    return tokenView(record);
  }
}
