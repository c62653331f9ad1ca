import { Readable } from 'node:stream';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import type { BlobCapabilities, BlobStore } from '../blob-store.js';
import type { BlobRef } from '../../core/types.js';
import { ConflictError, NotFoundError, wrapDriverError } from '../../core/errors.js';
import {
  checkRange,
  contentKey,
  errnoCode,
  hashFile,
  hashThrough,
  rangePastEnd,
  SingleFlight,
  tempKey,
  writeFileAtomically,
  type HashedBody,
  openRegularFile,
} from '../hashing.js';

const ADAPTER = 'azure-blob';
const MIB = 1024 * 1024;
/** How often a server-side copy that did not finish at once is polled. */
const COPY_POLL_MS = 500;

/** Options of {@link AzureBlobStore}. */
export interface AzureBlobStoreOptions {
  /** A storage account connection string (account key or SAS). */
  connectionString: string;
  container: string;
  /** Prepended to every blob name, e.g. `ion/`; include the trailing slash. Default empty. */
  prefix?: string;
  /**
   * Block size of streamed uploads. Default 8 MiB. A block blob has at most 50,000 blocks,
   * so this bounds the largest `put`: 8 MiB gives ~390 GiB.
   */
  blockSizeBytes?: number;
  /** Blocks uploaded in parallel. Default 4. */
  blockConcurrency?: number;
}

/**
 * The Azure Blob Storage blob store: content-addressed by sha256, block blobs named
 * `<prefix>sha256/ab/cd/<hash>` in one container.
 *
 * Invariants and decisions:
 * - A blob appears under its final name only once complete. `put` streams to
 *   `<prefix>tmp/<uuid>` with `uploadStream` (memory bounded by blockConcurrency ×
 *   blockSizeBytes) while hashing, then copies server side (Copy Blob, which within one
 *   account has no size limit and usually completes at once; otherwise it is polled) to the
 *   final name if absent, and deletes the temp blob. A process killed mid-put leaves a temp
 *   blob: a lifecycle management rule deleting `<prefix>tmp/` after a day collects them
 *   (uncommitted blocks of an unfinished upload expire by themselves after a week).
 * - The copy carries `If-None-Match: *`, so it never replaces a final blob; two concurrent
 *   puts of the same content in this process share one copy.
 * - `putFile` knows the hash first, so it uploads straight to the final name when absent. It
 *   hashes again what it sends: a file changed during the upload is detected, the blob
 *   removed and a ConflictError thrown. Callers must not modify a file being stored.
 * - `verify` only checks presence: this store never overwrites a final blob, so its content
 *   cannot change behind its back short of someone writing into the container directly.
 */
export class AzureBlobStore implements BlobStore {
  /** An object store every host can reach; objects are immutable, so `verify` checks presence. */
  readonly capabilities: BlobCapabilities = Object.freeze({
    sharedAcrossHosts: true,
    verifiesContent: false,
  });
  private readonly container: ContainerClient;
  private readonly prefix: string;
  private readonly blockSizeBytes: number;
  private readonly blockConcurrency: number;
  private readonly promotions = new SingleFlight();

  constructor(options: AzureBlobStoreOptions) {
    this.container = BlobServiceClient.fromConnectionString(
      options.connectionString,
    ).getContainerClient(options.container);
    this.prefix = options.prefix ?? '';
    this.blockSizeBytes = Math.max(1, Math.floor(options.blockSizeBytes ?? 8 * MIB));
    this.blockConcurrency = Math.max(1, Math.floor(options.blockConcurrency ?? 4));
  }

  /** Creates the container when absent (handy with emulators). */
  async start(): Promise<void> {
    try {
      await this.container.createIfNotExists();
    } catch (err) {
      throw wrapDriverError(
        ADAPTER,
        `start: create container ${this.container.containerName}`,
        err,
      );
    }
  }

  /**
   * Nothing to release: the SDK holds no connection of its own (requests go through a
   * shared keep-alive agent). Idempotent.
   */
  async close(): Promise<void> {}

  /**
   * Streams `source` to a temp blob while hashing, then copies it to its final name. An
   * error of the source is rethrown as is (it is the caller's); nothing is stored then.
   */
  async put(source: Readable | AsyncIterable<Uint8Array>): Promise<BlobRef> {
    const tmp = tempKey(this.prefix);
    const hashed = hashThrough(source);
    try {
      await this.upload(tmp, hashed);
    } catch (err) {
      await this.deleteQuietly(tmp);
      const failure = hashed.sourceFailure();
      if (failure !== undefined) throw failure.error;
      throw wrapDriverError(ADAPTER, 'put', err);
    }
    const ref = hashed.ref();
    try {
      await this.promote(tmp, contentKey(this.prefix, ref.sha256), ref.size);
    } catch (err) {
      throw wrapDriverError(ADAPTER, `put(${ref.sha256})`, err);
    } finally {
      await this.deleteQuietly(tmp);
    }
    return ref;
  }

  /**
   * Hashes the file, then uploads it straight to its final name unless present. Throws
   * NotFoundError when `path` does not exist, ConflictError when it changed meanwhile.
   */
  async putFile(path: string): Promise<BlobRef> {
    let ref: BlobRef;
    try {
      ref = await hashFile(path);
    } catch (err) {
      throw wrapDriverError(ADAPTER, `putFile(${path})`, err);
    }
    const name = contentKey(this.prefix, ref.sha256);
    try {
      if ((await this.size(name)) !== null) return ref;
    } catch (err) {
      throw wrapDriverError(ADAPTER, `putFile(${path})`, err);
    }
    let source: Readable;
    try {
      source = await openRegularFile(path);
    } catch (err) {
      throw wrapDriverError(ADAPTER, `putFile(${path})`, err);
    }
    const hashed = hashThrough(source);
    try {
      await this.upload(name, hashed);
    } catch (err) {
      const failure = hashed.sourceFailure();
      if (failure !== undefined && errnoCode(failure.error) === 'ENOENT')
        throw new NotFoundError(`${ADAPTER}: file not found: ${path}`, { cause: failure.error });
      throw wrapDriverError(ADAPTER, `putFile(${path})`, failure?.error ?? err);
    }
    const sent = hashed.ref();
    if (sent.sha256 !== ref.sha256 || sent.size !== ref.size) {
      await this.deleteQuietly(name);
      throw new ConflictError(`${ADAPTER}: file ${path} changed while it was being stored`);
    }
    return ref;
  }

  /** Presence only: see the class comment. */
  async verify(sha256: string): Promise<boolean> {
    return (await this.stat(sha256)) !== null;
  }

  /** Null when absent. */
  async stat(sha256: string): Promise<BlobRef | null> {
    const name = contentKey(this.prefix, sha256);
    try {
      const size = await this.size(name);
      return size === null ? null : { sha256, size };
    } catch (err) {
      throw wrapDriverError(ADAPTER, `stat(${sha256})`, err);
    }
  }

  /**
   * Streams a blob out. `range` is inclusive like HTTP: `end` past the last byte is clamped
   * to it; a negative or non-integer bound, `start > end`, or `start` at or past the size
   * (the service answers 416) is a ValidationError. Absence is reported here.
   */
  async get(sha256: string, range?: { start: number; end: number }): Promise<Readable> {
    const name = contentKey(this.prefix, sha256);
    if (range !== undefined) checkRange(range);
    try {
      const res =
        range === undefined
          ? await this.container.getBlobClient(name).download()
          : await this.container
              .getBlobClient(name)
              .download(range.start, range.end - range.start + 1);
      const body = res.readableStreamBody;
      if (range !== undefined && range.start >= totalSize(res.contentRange)) {
        // Azure answers 416 here; Azurite serves an empty 206 (`bytes 10-9/10`) instead.
        if (body instanceof Readable) body.destroy();
        throw rangePastEnd(sha256, range.start, undefined);
      }
      if (body === undefined) return Readable.from([]);
      return body instanceof Readable ? body : Readable.from(body);
    } catch (err) {
      if (isBlobNotFound(err)) throw new NotFoundError(`blob not found: ${sha256}`, { cause: err });
      if (range !== undefined && statusOf(err) === 416)
        throw rangePastEnd(sha256, range.start, err);
      throw wrapDriverError(ADAPTER, `get(${sha256})`, err);
    }
  }

  /** Downloads into a temp file beside `destPath` (parents created), renamed over it. */
  async materialize(sha256: string, destPath: string): Promise<void> {
    const content = await this.get(sha256);
    try {
      await writeFileAtomically(content, destPath);
    } catch (err) {
      throw wrapDriverError(ADAPTER, `materialize(${sha256}, ${destPath})`, err);
    }
  }

  private async upload(name: string, hashed: HashedBody): Promise<void> {
    try {
      await this.container
        .getBlockBlobClient(name)
        .uploadStream(hashed.body, this.blockSizeBytes, this.blockConcurrency);
    } catch (err) {
      // The uploader stops reading on failure: release the source.
      hashed.body.destroy();
      throw err;
    }
  }

  /**
   * Copies the temp blob to the final name unless present, never replacing one
   * (`If-None-Match: *`). A copy refused because an identical blob landed meanwhile (from
   * another process) counts as success.
   */
  private async promote(tmp: string, name: string, size: number): Promise<void> {
    await this.promotions.run(name, async () => {
      if ((await this.size(name)) !== null) return;
      const target = this.container.getBlobClient(name);
      try {
        const poller = await target.beginCopyFromURL(this.container.getBlobClient(tmp).url, {
          conditions: { ifNoneMatch: '*' },
          intervalInMs: COPY_POLL_MS,
        });
        const done = await poller.pollUntilDone();
        if (done.copyStatus !== undefined && done.copyStatus !== 'success')
          throw new Error(`copy ended as ${done.copyStatus}`);
      } catch (err) {
        if ((await this.size(name).catch(() => null)) === size) return;
        throw err;
      }
    });
  }

  /** Size of a blob, null when absent. Throws driver errors unwrapped. */
  private async size(name: string): Promise<number | null> {
    try {
      const props = await this.container.getBlobClient(name).getProperties();
      // A blob being copied into is visible before its content: treat it as absent.
      if (props.copyStatus !== undefined && props.copyStatus !== 'success') return null;
      return props.contentLength ?? 0;
    } catch (err) {
      if (isBlobNotFound(err)) return null;
      throw err;
    }
  }

  /** Best effort: a temp blob left behind costs storage, not correctness. */
  private async deleteQuietly(name: string): Promise<void> {
    try {
      await this.container.getBlobClient(name).deleteIfExists();
    } catch {
      // see above
    }
  }
}

function statusOf(err: unknown): number | undefined {
  return typeof err === 'object' && err !== null && 'statusCode' in err
    ? (err.statusCode as number | undefined)
    : undefined;
}

/** A 404 about the blob; a missing container is a configuration error, not a missing blob. */
function isBlobNotFound(err: unknown): boolean {
  if (statusOf(err) !== 404) return false;
  const code = typeof err === 'object' && err !== null && 'code' in err ? err.code : undefined;
  return code !== 'ContainerNotFound';
}

/** The blob size a Content-Range header (`bytes 0-9/10`) reports; +Infinity when unknown. */
function totalSize(contentRange: string | undefined): number {
  const match = /\/(\d+)$/.exec(contentRange ?? '');
  return match === null ? Number.POSITIVE_INFINITY : Number(match[1]);
}
