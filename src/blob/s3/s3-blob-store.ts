import { Readable } from 'node:stream';
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  S3Client,
  type BucketLocationConstraint,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { BlobCapabilities, BlobStore } from '../blob-store.js';
import type { BlobRef } from '../../core/types.js';
import {
  ConflictError,
  NotFoundError,
  UnavailableError,
  wrapDriverError,
} from '../../core/errors.js';
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
import { copyObject } from './copy.js';
import { clampToRange, errorName, isNotFound, isRangeNotSatisfiable } from './responses.js';

const ADAPTER = 's3-blob';
const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
/** S3's smallest part (but the last) of a multipart upload. */
const MIN_PART_BYTES = 5 * MIB;
/** S3's largest single CopyObject; larger objects need a multipart copy. */
const MAX_SINGLE_COPY_BYTES = 5 * GIB;

/** Options of {@link S3BlobStore}. */
export interface S3BlobStoreOptions {
  bucket: string;
  /** Prepended to every key, e.g. `ion/`; include the trailing slash. Default empty. */
  prefix?: string;
  /** Default: the SDK's provider chain (AWS_REGION, profile...). */
  region?: string;
  /** For S3-compatible servers (MinIO, s3rver...). */
  endpoint?: string;
  /** Path-style URLs (`host/bucket/key`), needed by most S3-compatible servers. */
  forcePathStyle?: boolean;
  /** Default: the SDK's provider chain (environment, profile, instance role...). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /**
   * Part size of multipart uploads, at least 5 MiB (S3's minimum). Default 8 MiB. A stream
   * can have at most 10,000 parts, so this bounds the largest `put`: 8 MiB gives ~78 GiB.
   */
  partSizeBytes?: number;
  /** Parts uploaded (and copied) in parallel. Default 4. */
  partConcurrency?: number;
  /**
   * Objects larger than this are moved from their temp key with a multipart copy
   * (UploadPartCopy) instead of one CopyObject. Default and maximum 5 GiB, S3's CopyObject
   * limit; lower it only to exercise the multipart path against a real S3.
   */
  multipartCopyThresholdBytes?: number;
  /**
   * `when_supported` (default) lets the SDK add CRC checksums to uploads and validate them
   * on downloads; `when_required` turns that off for S3-compatible servers that do not
   * understand the `aws-chunked` encoding it uses (s3rver, some MinIO versions).
   */
  checksums?: 'when_supported' | 'when_required';
  /** How long connecting may take. Default 5 s. */
  connectTimeoutMs?: number;
  /** How long a request may go without a byte either way before it fails. Default 60 s. */
  idleTimeoutMs?: number;
}

/** How long connecting to the object store may take. */
const CONNECT_TIMEOUT_MS = 5_000;
/** How long a request may go without a byte either way before it fails. */
const IDLE_TIMEOUT_MS = 60_000;

/**
 * The S3 blob store: content-addressed by sha256, blobs at `<prefix>sha256/ab/cd/<hash>`.
 *
 * Invariants and decisions:
 * - A blob appears under its final key only once complete. `put` does not know the hash
 *   before the end, so it streams to `<prefix>tmp/<uuid>` with a multipart `Upload`
 *   (memory bounded by partConcurrency × partSizeBytes) while hashing, then copies server
 *   side to the final key if absent and deletes the temp key. Objects over 5 GiB are
 *   copied with UploadPartCopy. A process killed mid-put leaves a temp key (and maybe an
 *   incomplete multipart upload): give the bucket a lifecycle rule expiring `<prefix>tmp/`
 *   and aborting incomplete multipart uploads after a day.
 * - `putFile` knows the hash first (one read of the file), so it uploads straight to the
 *   final key when absent. It hashes again what it sends: a file changed during the
 *   upload is detected, the object removed and a ConflictError thrown. Callers must not
 *   modify a file while it is being stored.
 * - Two concurrent puts of the same content may both copy to the final key: S3 keeps one
 *   of two identical objects, which no reader can notice.
 * - `verify` only checks presence: objects are immutable in S3 and this store never
 *   overwrites a final key with other content, so nothing can change behind its back short
 *   of someone writing into the bucket directly.
 * - Every sha256 argument is checked to be 64 lowercase hex digits before it names a key.
 */
export class S3BlobStore implements BlobStore {
  /** An object store every host can reach; objects are immutable, so `verify` checks presence. */
  readonly capabilities: BlobCapabilities = Object.freeze({
    sharedAcrossHosts: true,
    verifiesContent: false,
  });
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly region: string | undefined;
  private readonly partSizeBytes: number;
  private readonly partConcurrency: number;
  private readonly multipartCopyThresholdBytes: number;
  private closed = false;
  /** Copies to final keys in progress: see {@link S3BlobStore.promote}. */
  private readonly promotions = new SingleFlight();

  constructor(options: S3BlobStoreOptions) {
    this.bucket = options.bucket;
    this.prefix = options.prefix ?? '';
    this.region = options.region;
    this.partSizeBytes = Math.max(options.partSizeBytes ?? 8 * MIB, MIN_PART_BYTES);
    this.partConcurrency = Math.max(1, Math.floor(options.partConcurrency ?? 4));
    this.multipartCopyThresholdBytes = Math.min(
      options.multipartCopyThresholdBytes ?? MAX_SINGLE_COPY_BYTES,
      MAX_SINGLE_COPY_BYTES,
    );
    const checksums = options.checksums === 'when_required' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED';
    const config: S3ClientConfig = {
      requestChecksumCalculation: checksums,
      responseChecksumValidation: checksums,
      // An object store that stops answering fails the call instead of holding it (and the
      // API request or job behind it) for ever; idle, not whole-request, so a long transfer
      // that keeps moving is never cut.
      requestHandler: {
        connectionTimeout: options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
        socketTimeout: options.idleTimeoutMs ?? IDLE_TIMEOUT_MS,
      },
    };
    if (options.region !== undefined) config.region = options.region;
    if (options.endpoint !== undefined) config.endpoint = options.endpoint;
    if (options.forcePathStyle !== undefined) config.forcePathStyle = options.forcePathStyle;
    if (options.credentials !== undefined) config.credentials = options.credentials;
    this.client = new S3Client(config);
  }

  /** Creates the bucket when absent (handy with emulators; in production it usually exists). */
  async start(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      return;
    } catch (err) {
      if (!isNotFound(err))
        throw wrapDriverError(ADAPTER, `start: head bucket ${this.bucket}`, err);
    }
    try {
      const region = this.region;
      await this.client.send(
        new CreateBucketCommand({
          Bucket: this.bucket,
          ...(region !== undefined && region !== 'us-east-1'
            ? {
                CreateBucketConfiguration: {
                  LocationConstraint: region as BucketLocationConstraint,
                },
              }
            : {}),
        }),
      );
    } catch (err) {
      if (errorName(err) === 'BucketAlreadyOwnedByYou') return;
      throw wrapDriverError(ADAPTER, `start: create bucket ${this.bucket}`, err);
    }
  }

  /** Releases the client's sockets. Idempotent. */
  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.client.destroy();
    }
    return Promise.resolve();
  }

  /**
   * Streams `source` to a temp key while hashing, then copies it to its final key. An error
   * of the source is rethrown as is (it is the caller's); nothing is stored then.
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
   * Hashes the file, then uploads it straight to its final key unless present. Throws
   * NotFoundError when `path` does not exist, ConflictError when it changed meanwhile.
   */
  async putFile(path: string): Promise<BlobRef> {
    let ref: BlobRef;
    try {
      ref = await hashFile(path);
    } catch (err) {
      throw wrapDriverError(ADAPTER, `putFile(${path})`, err);
    }
    const key = contentKey(this.prefix, ref.sha256);
    try {
      if ((await this.headSize(key)) !== null) return ref;
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
      await this.upload(key, hashed);
    } catch (err) {
      const failure = hashed.sourceFailure();
      if (failure !== undefined && errnoCode(failure.error) === 'ENOENT')
        throw new NotFoundError(`${ADAPTER}: file not found: ${path}`, { cause: failure.error });
      throw wrapDriverError(ADAPTER, `putFile(${path})`, failure?.error ?? err);
    }
    const sent = hashed.ref();
    if (sent.sha256 !== ref.sha256 || sent.size !== ref.size) {
      await this.deleteQuietly(key);
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
    const key = contentKey(this.prefix, sha256);
    try {
      const size = await this.headSize(key);
      return size === null ? null : { sha256, size };
    } catch (err) {
      throw wrapDriverError(ADAPTER, `stat(${sha256})`, err);
    }
  }

  /**
   * Streams a blob out. `range` is inclusive like HTTP: `end` past the last byte is clamped
   * to it; a negative or non-integer bound, `start > end`, or `start` at or past the size
   * (S3 answers 416) is a ValidationError. Absence is reported here (NotFoundError), since
   * the response headers arrive before this returns.
   */
  async get(sha256: string, range?: { start: number; end: number }): Promise<Readable> {
    const key = contentKey(this.prefix, sha256);
    if (range !== undefined) checkRange(range);
    try {
      const res = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: key,
          ...(range === undefined ? {} : { Range: `bytes=${range.start}-${range.end}` }),
        }),
      );
      const body = res.Body;
      if (body === undefined) return Readable.from([]);
      if (!(body instanceof Readable)) throw new Error('unexpected body type (not a Node stream)');
      if (range === undefined) return body;
      return clampToRange(body, range, res.ContentRange);
    } catch (err) {
      if (isNotFound(err)) throw new NotFoundError(`blob not found: ${sha256}`, { cause: err });
      if (range !== undefined && isRangeNotSatisfiable(err))
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

  private async upload(key: string, hashed: HashedBody): Promise<void> {
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: key, Body: hashed.body },
      partSize: this.partSizeBytes,
      queueSize: this.partConcurrency,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (err) {
      // The uploader stops reading on failure: release the source.
      hashed.body.destroy();
      throw err;
    }
  }

  /**
   * Copies the temp object `tmp` to the final `key` unless present. Puts of the same content
   * running in this process share one copy: that saves requests, and keeps emulators whose
   * copy is not atomic (s3rver writes the destination file in place) from interleaving two
   * copies. Across processes, S3's atomic writes make a double copy harmless; and a copy
   * that fails while an identical object landed meanwhile counts as success.
   */
  private async promote(tmp: string, key: string, size: number): Promise<void> {
    await this.promotions.run(key, async () => {
      // An object of another size under a content address is a damaged one: copied again.
      if ((await this.headSize(key)) === size) return;
      try {
        await this.copy(tmp, key, size);
      } catch (err) {
        if ((await this.headSize(key).catch(() => null)) === size) return;
        throw err;
      }
      // An object store that runs out of space can answer a write with success and keep
      // fewer bytes (the soak saw empty objects from s3rver on a full disk): check it.
      const stored = await this.headSize(key);
      if (stored !== size) {
        await this.deleteQuietly(key);
        throw new UnavailableError(
          `${ADAPTER}: put: the object store kept ${stored ?? 'no'} bytes of ${size} for ${key}`,
        );
      }
    });
  }

  /** Size of an object, null when absent. Throws driver errors unwrapped. */
  private async headSize(key: string): Promise<number | null> {
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return head.ContentLength ?? 0;
    } catch (err) {
      if (isNotFound(err)) return null;
      throw err;
    }
  }

  /** Server-side copy of `from` to `to` (see {@link copyObject}). */
  private async copy(from: string, to: string, size: number): Promise<void> {
    await copyObject(this.client, this.bucket, from, to, size, {
      multipartCopyThresholdBytes: this.multipartCopyThresholdBytes,
      partConcurrency: this.partConcurrency,
    });
  }

  /**
   * Best effort: a temp key left behind costs storage, not correctness (the lifecycle rule
   * of the class comment collects it), so its deletion never fails an operation.
   */
  private async deleteQuietly(key: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch {
      // see above
    }
  }
}
