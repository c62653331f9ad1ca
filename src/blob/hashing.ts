import { createHash, randomUUID } from 'node:crypto';
import { constants, createWriteStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { dirname } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BlobRef } from '../core/types.js';
import { NotFoundError, ValidationError } from '../core/errors.js';

/**
 * Helpers shared by the object-storage blob adapters (S3, Azure): the content-addressed
 * layout, argument checks that match the filesystem adapter's, and streaming sha256.
 */

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Throws ValidationError unless `sha256` is 64 lowercase hex digits. */
export function assertSha256(sha256: string): void {
  if (typeof sha256 !== 'string' || !SHA256_HEX.test(sha256)) {
    throw new ValidationError(
      `invalid sha256: expected 64 lowercase hex digits, got ${JSON.stringify(sha256)}`,
      [{ path: 'sha256', message: 'must be 64 lowercase hex digits' }],
    );
  }
}

/** The object name of a blob: `<prefix>sha256/ab/cd/<hash>`. Validates `sha256` first. */
export function contentKey(prefix: string, sha256: string): string {
  assertSha256(sha256);
  return `${prefix}sha256/${sha256.slice(0, 2)}/${sha256.slice(2, 4)}/${sha256}`;
}

/** A fresh temporary object name: `<prefix>tmp/<uuid>`. */
export function tempKey(prefix: string): string {
  return `${prefix}tmp/${randomUUID()}`;
}

/**
 * Checks a read range the way the filesystem adapter does: integers with
 * `0 <= start <= end`. Whether `start` lies inside the blob is known only to the server;
 * the adapters map its "range not satisfiable" answer to {@link rangePastEnd}.
 */
export function checkRange(range: { start: number; end: number }): void {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new ValidationError(
      `invalid range ${start}-${end}: need integers with 0 <= start <= end`,
      [{ path: 'range', message: 'need integers with 0 <= start <= end' }],
    );
  }
}

/** The ValidationError for a range whose start is at or past the end of the blob. */
export function rangePastEnd(sha256: string, start: number, cause: unknown): ValidationError {
  return new ValidationError(
    `range start ${start} is past the end of blob ${sha256}`,
    [{ path: 'range.start', message: 'must be below the blob size' }],
    { cause },
  );
}

/** What {@link hashThrough} hands back. */
export interface HashedBody {
  /** The bytes of the source, to hand to an upload as its body. */
  body: Readable;
  /** The sha256 and size of everything read; final once `body` has ended. */
  ref(): BlobRef;
  /**
   * Set when the source itself failed (as opposed to the upload reading it): its error is
   * the caller's, to be rethrown as is rather than wrapped as a driver error.
   */
  sourceFailure(): { error: unknown } | undefined;
}

/**
 * Wraps `source` in a byte stream that hashes and counts as the upload reads it, so the
 * content is hashed in the same single pass that sends it and memory stays bounded by the
 * uploader's buffers. Destroying `body` (when the upload fails) releases the source.
 */
export function hashThrough(source: Readable | AsyncIterable<Uint8Array>): HashedBody {
  const hash = createHash('sha256');
  let size = 0;
  let digest: string | undefined;
  let failure: { error: unknown } | undefined;
  async function* hashed(): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of source as AsyncIterable<Uint8Array | string>) {
        const bytes =
          typeof chunk === 'string'
            ? Buffer.from(chunk)
            : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
        hash.update(bytes);
        size += bytes.length;
        yield bytes;
      }
    } catch (error) {
      failure = { error };
      throw error;
    }
  }
  return {
    body: Readable.from(hashed(), { objectMode: false }),
    ref: () => {
      digest ??= hash.digest('hex');
      return { sha256: digest, size };
    },
    sourceFailure: () => failure,
  };
}

/** Streams a local file through sha256. Throws NotFoundError when it does not exist. */
export async function hashFile(path: string): Promise<BlobRef> {
  const hash = createHash('sha256');
  let size = 0;
  try {
    for await (const chunk of await openRegularFile(path)) {
      const bytes = chunk as Buffer;
      hash.update(bytes);
      size += bytes.length;
    }
  } catch (err) {
    if (errnoCode(err) === 'ENOENT')
      throw new NotFoundError(`file not found: ${path}`, { cause: err });
    if (errnoCode(err) === 'ELOOP') throw new SymlinkRefused(path, err);
    throw err;
  }
  return { sha256: hash.digest('hex'), size };
}

/**
 * A file to store turned out to be a symbolic link. Stores never follow one at the last
 * component of a path they are given: a module's process left running could swap a checked
 * output file for a link to a secret between the check and the store.
 */
export class SymlinkRefused extends ValidationError {
  constructor(path: string, cause: unknown) {
    super(`${path} is a symbolic link; only regular files are stored`, [], { cause });
  }
}

/**
 * Opens a file for reading without following a symbolic link in its last component
 * (O_NOFOLLOW: a link fails with ELOOP). The stream closes the file when it ends.
 */
export async function openRegularFile(path: string): Promise<Readable> {
  const handle = await fsp.open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  return handle.createReadStream();
}

/**
 * Writes `content` to `destPath` (parents created) through a temp file beside it, renamed
 * over the destination at the end: an existing file is replaced atomically and a reader
 * never sees a half-written one. The temp file is removed on failure.
 */
export async function writeFileAtomically(content: Readable, destPath: string): Promise<void> {
  await fsp.mkdir(dirname(destPath), { recursive: true });
  const tmp = `${destPath}.ion-tmp-${randomUUID()}`;
  try {
    await pipeline(content, createWriteStream(tmp, { flags: 'wx', flush: true }));
    await fsp.rename(tmp, destPath);
  } catch (err) {
    content.destroy();
    await fsp.rm(tmp, { force: true });
    throw err;
  }
}

export function errnoCode(err: unknown): string | undefined {
  return err instanceof Error && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

/**
 * Runs at most one operation per key at a time in this process: a caller arriving while
 * one runs shares its outcome. The object-storage adapters use it so that concurrent puts
 * of the same content make one server-side copy to the final name, not several.
 */
export class SingleFlight {
  private readonly running = new Map<string, Promise<void>>();

  async run(key: string, operation: () => Promise<void>): Promise<void> {
    const existing = this.running.get(key);
    if (existing !== undefined) return existing;
    const started = operation();
    this.running.set(key, started);
    try {
      await started;
    } finally {
      this.running.delete(key);
    }
  }
}
