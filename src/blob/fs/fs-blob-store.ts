import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { BlobCapabilities, BlobStore } from '../blob-store.js';
import type { BlobRef } from '../../core/types.js';
import { NotFoundError, ValidationError, wrapDriverError } from '../../core/errors.js';
import { SymlinkRefused, hashFile, openRegularFile } from '../hashing.js';
import { processAlive } from '../../core/processes.js';

const SHA256_HEX = /^[0-9a-f]{64}$/;
const ADAPTER = 'fs blob store';

/** Options of {@link FsBlobStore}. */
export interface FsBlobStoreOptions {
  /** Root directory of the store; `sha256/` and `tmp/` are created inside it. */
  dir: string;
}

/**
 * The filesystem blob store: content-addressed by sha256, blobs at
 * `<dir>/sha256/ab/cd/<hash>`, stored read-only (mode 0o444).
 *
 * Invariants:
 * - A blob appears under its final name only once complete: content is streamed into
 *   `<dir>/tmp/` while hashed, then renamed into place (same filesystem, so atomic).
 *   A reader therefore never sees a partial blob.
 * - Every sha256 argument is checked to be 64 lowercase hex digits before it touches a
 *   path, so no argument can name a file outside the store.
 * - `putFile` and `materialize` hard-link when they can, so large files cost no copy. The
 *   price: a linked file shares its inode with the store. `putFile` makes the caller's file
 *   read-only (same inode), and writing into a linked file in place would corrupt the blob,
 *   so callers must treat both as immutable.
 */
export class FsBlobStore implements BlobStore {
  /** One host's directory; `verify` rehashes, since a hard link can change a blob in place. */
  readonly capabilities: BlobCapabilities = Object.freeze({
    sharedAcrossHosts: false,
    verifiesContent: true,
  });
  private readonly dir: string;
  private readonly tmpDir: string;

  constructor(options: FsBlobStoreOptions) {
    this.dir = options.dir;
    this.tmpDir = join(options.dir, 'tmp');
  }

  /**
   * Creates the store directories, and removes the temporary files that a process of this
   * host left when it died (a SIGKILL mid-upload): each is named after its writer's host and
   * pid. Other hosts' files (a shared directory) and live processes' are left alone.
   */
  async start(): Promise<void> {
    await this.fsCall('start', async () => {
      await fsp.mkdir(join(this.dir, 'sha256'), { recursive: true });
      await fsp.mkdir(this.tmpDir, { recursive: true });
    });
    for (const name of await fsp.readdir(this.tmpDir).catch(() => [] as string[])) {
      const writer = tempWriter(name);
      if (writer !== null && writer.host === TEMP_HOST && !processAlive(writer.pid))
        await removeQuietly(join(this.tmpDir, name));
    }
  }

  /** Nothing to release: every operation opens and closes its own files. Idempotent. */
  async close(): Promise<void> {}

  /**
   * Streams `source` into a temp file while hashing, then moves it into place. An error of
   * the source is rethrown as is (it is the caller's, not the store's); nothing is stored.
   */
  async put(source: Readable | AsyncIterable<Uint8Array>): Promise<BlobRef> {
    const tmp = await this.tempPath();
    const hash = createHash('sha256');
    let size = 0;
    // Created before the pipeline, not by the write stream's own (asynchronous) open: a
    // source that fails at once would otherwise let that open land after the clean-up below
    // and leave the temp file behind.
    const file = await this.fsCall('put', () => fsp.open(tmp, 'wx'));
    try {
      await pipeline(
        source,
        async function* (chunks: AsyncIterable<Uint8Array | string>) {
          for await (const chunk of chunks) {
            const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
            hash.update(bytes);
            size += bytes.length;
            yield bytes;
          }
        },
        file.createWriteStream({ flush: true }),
      );
    } catch (err) {
      await file.close().catch(() => undefined);
      await removeQuietly(tmp);
      // The disk's fault (full, read-only, failing) is the store's, unavailable for now; the
      // source's (a client that went away) passes on as it is.
      if (STORAGE_ERRORS.has(errnoCode(err) ?? '')) throw wrapDriverError(ADAPTER, 'put', err);
      throw err;
    }
    const ref = { sha256: hash.digest('hex'), size };
    await this.fsCall('put', () => this.moveIntoPlace(tmp, ref.sha256));
    return ref;
  }

  /**
   * Stores a local file: hard-links it into `tmp/` (copies when linking is refused, e.g.
   * across filesystems), hashes that link by streaming, then moves it into place. Hashing
   * the link rather than the original means a file replaced by rename meanwhile cannot be
   * stored under the wrong hash. Throws NotFoundError when `path` does not exist.
   */
  async putFile(path: string): Promise<BlobRef> {
    const tmp = await this.tempPath();
    try {
      await linkOrCopy(path, tmp);
    } catch (err) {
      await removeQuietly(tmp);
      if (errnoCode(err) === 'ENOENT')
        throw new NotFoundError(`${ADAPTER}: file not found: ${path}`, { cause: err });
      throw wrapDriverError(ADAPTER, `putFile(${path})`, err);
    }
    try {
      // link() copied a symlink as a symlink: hashing it without following refuses it.
      const ref = await hashFile(tmp).catch((err: unknown) => {
        throw err instanceof SymlinkRefused ? new SymlinkRefused(path, err) : err;
      });
      await this.moveIntoPlace(tmp, ref.sha256);
      return ref;
    } catch (err) {
      await removeQuietly(tmp);
      throw wrapDriverError(ADAPTER, `putFile(${path})`, err);
    }
  }

  /**
   * Re-hashes a stored blob. A hard-linked copy changed in place (only possible for a
   * process that ignores the read-only mode, such as one running as root) no longer matches
   * its address: the blob is removed so it is never served with the wrong content.
   */
  async verify(sha256: string): Promise<boolean> {
    const path = this.blobPath(sha256);
    let actual: BlobRef;
    try {
      actual = await hashFile(path);
    } catch (err) {
      if (err instanceof NotFoundError) return false;
      throw wrapDriverError(ADAPTER, `verify(${sha256})`, err);
    }
    if (actual.sha256 === sha256) return true;
    await removeQuietly(path);
    return false;
  }

  /** Null when absent. */
  async stat(sha256: string): Promise<BlobRef | null> {
    const path = this.blobPath(sha256);
    try {
      const st = await fsp.stat(path);
      return { sha256, size: st.size };
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return null;
      throw wrapDriverError(ADAPTER, `stat(${sha256})`, err);
    }
  }

  /**
   * Streams a blob out. `range` is inclusive like HTTP: `end` past the last byte is clamped
   * to it; a negative or non-integer bound, `start > end`, or `start` at or past the size
   * is a ValidationError. The file is opened before returning, so absence is reported here
   * (NotFoundError) and not as a stream error.
   */
  async get(sha256: string, range?: { start: number; end: number }): Promise<Readable> {
    const path = this.blobPath(sha256);
    if (range !== undefined) checkRange(range);
    let handle: fsp.FileHandle;
    try {
      handle = await fsp.open(path, 'r');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT')
        throw new NotFoundError(`blob not found: ${sha256}`, { cause: err });
      throw wrapDriverError(ADAPTER, `get(${sha256})`, err);
    }
    if (range === undefined) return handle.createReadStream();
    try {
      const { size } = await handle.stat();
      if (range.start >= size) {
        throw new ValidationError(
          `range start ${range.start} is past the end of blob ${sha256} (size ${size})`,
          [{ path: 'range.start', message: `must be below ${size}` }],
        );
      }
      return handle.createReadStream({ start: range.start, end: Math.min(range.end, size - 1) });
    } catch (err) {
      await handle.close();
      throw wrapDriverError(ADAPTER, `get(${sha256})`, err);
    }
  }

  /**
   * Writes the blob to `destPath`, creating parents: a hard link (copy when linking is
   * refused) made beside the destination under a temp name, then renamed over it, so an
   * existing file is replaced atomically and a reader never sees a half-written one.
   */
  async materialize(sha256: string, destPath: string): Promise<void> {
    const path = this.blobPath(sha256);
    if ((await this.stat(sha256)) === null) throw new NotFoundError(`blob not found: ${sha256}`);
    const tmp = `${destPath}.ion-tmp-${randomUUID()}`;
    try {
      await fsp.mkdir(dirname(destPath), { recursive: true });
      await linkOrCopy(path, tmp);
      await fsp.rename(tmp, destPath);
      // rename() is a no-op when both names already link the same inode: drop the temp.
      await removeQuietly(tmp);
    } catch (err) {
      await removeQuietly(tmp);
      if (errnoCode(err) === 'ENOENT')
        throw new NotFoundError(`blob not found: ${sha256}`, { cause: err });
      throw wrapDriverError(ADAPTER, `materialize(${sha256}, ${destPath})`, err);
    }
  }

  /** The stored path of a blob; throws ValidationError unless `sha256` is 64 lowercase hex. */
  private blobPath(sha256: string): string {
    if (typeof sha256 !== 'string' || !SHA256_HEX.test(sha256)) {
      throw new ValidationError(
        `invalid sha256: expected 64 lowercase hex digits, got ${JSON.stringify(sha256)}`,
        [{ path: 'sha256', message: 'must be 64 lowercase hex digits' }],
      );
    }
    return join(this.dir, 'sha256', sha256.slice(0, 2), sha256.slice(2, 4), sha256);
  }

  private async tempPath(): Promise<string> {
    await this.fsCall('create temp dir', () => fsp.mkdir(this.tmpDir, { recursive: true }));
    return join(this.tmpDir, `${TEMP_HOST}.${process.pid}.${randomUUID()}`);
  }

  /** Makes `tmp` read-only and renames it to the blob's path, or drops it if present. */
  private async moveIntoPlace(tmp: string, sha256: string): Promise<void> {
    const path = this.blobPath(sha256);
    if (await exists(path)) {
      await removeQuietly(tmp);
      return;
    }
    await makeReadOnly(tmp);
    await fsp.mkdir(dirname(path), { recursive: true });
    // Two concurrent puts of the same content may both get here: rename replaces one
    // complete, identical file by another, which no reader can notice.
    await fsp.rename(tmp, path);
  }

  private async fsCall<T>(action: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw wrapDriverError(ADAPTER, action, err);
    }
  }
}

/** This host's name as it stands in temporary file names (dots would split it). */
const TEMP_HOST = hostname().replace(/[^A-Za-z0-9-]/g, '_');

/** The host and pid in a temporary file's name (`<host>.<pid>.<uuid>`), or null. */
function tempWriter(name: string): { host: string; pid: number } | null {
  const match = /^([A-Za-z0-9_-]+)\.(\d+)\.[0-9a-f-]{36}$/.exec(name);
  return match === null ? null : { host: match[1]!, pid: Number(match[2]) };
}

/** Errors of the disk under the store, not of what is being stored. */
const STORAGE_ERRORS = new Set(['ENOSPC', 'EDQUOT', 'EROFS', 'EIO', 'EFBIG']);

function checkRange(range: { start: number; end: number }): void {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start) {
    throw new ValidationError(
      `invalid range ${start}-${end}: need integers with 0 <= start <= end`,
      [{ path: 'range', message: 'need integers with 0 <= start <= end' }],
    );
  }
}

/** Hard-links `from` to `to`; copies when the filesystem refuses (EXDEV, EPERM, ENOTSUP...). */
async function linkOrCopy(from: string, to: string): Promise<void> {
  try {
    await fsp.link(from, to);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT' || errnoCode(err) === 'EEXIST') throw err;
    // Never follow a symlink: copy the regular file itself, or refuse (see SymlinkRefused).
    await pipeline(await openRegularFile(from), createWriteStream(to, { flags: 'wx' }));
  }
}

/**
 * chmod 0o444. A linked file owned by another user cannot be chmod-ed (EPERM): it is kept
 * as it is rather than failing the store, since its content is already verified by hash.
 */
async function makeReadOnly(path: string): Promise<void> {
  try {
    await fsp.chmod(path, 0o444);
  } catch (err) {
    if (errnoCode(err) !== 'EPERM') throw err;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await fsp.access(path);
    return true;
  } catch {
    return false;
  }
}

async function removeQuietly(path: string): Promise<void> {
  await fsp.rm(path, { force: true });
}

function errnoCode(err: unknown): string | undefined {
  return err instanceof Error && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}
