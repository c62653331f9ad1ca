import type { Readable } from 'node:stream';
import type { BlobRef } from '../core/types.js';

/**
 * The blob store port: content-addressed by sha256, streamed both ways, never buffered whole
 * in memory. Storing the same content twice is a no-op that returns the same reference.
 */
/**
 * What an adapter can and cannot do beyond the port's common contract, declared on the
 * adapter so the conformance suite and the composition root read it instead of knowing it.
 */
export interface BlobCapabilities {
  /**
   * Whether processes on other hosts (workers, Kubernetes pods) can reach the same blobs
   * (an object store), or only processes that see this host's directory.
   */
  sharedAcrossHosts: boolean;
  /**
   * Whether `verify` rehashes the stored content (its content could change behind the
   * store's back, e.g. through a hard link); false: `verify` reports presence only, the
   * content being immutable once stored.
   */
  verifiesContent: boolean;
}

export interface BlobStore {
  /** What this adapter can do beyond the common contract. */
  readonly capabilities: BlobCapabilities;
  start(): Promise<void>;
  /** Idempotent. */
  close(): Promise<void>;
  /** Streams content in, hashing as it goes. */
  put(source: Readable | AsyncIterable<Uint8Array>): Promise<BlobRef>;
  /** Stores a local file (an adapter may link instead of copying). */
  putFile(path: string): Promise<BlobRef>;
  /** Null when absent. */
  stat(sha256: string): Promise<BlobRef | null>;
  /**
   * Checks that the stored content still hashes to its address; a blob that does not is
   * removed and false returned (false too when absent). Adapters whose content cannot change
   * behind their back may simply report presence.
   */
  verify(sha256: string): Promise<boolean>;
  /**
   * Streams a blob out; `range` is inclusive on both ends like HTTP ranges.
   * Throws NotFoundError when absent.
   */
  get(sha256: string, range?: { start: number; end: number }): Promise<Readable>;
  /**
   * Writes the blob to `destPath` (parents created). The filesystem adapter hard-links when
   * it can, so a large file costs no copy; the result must be treated as read-only.
   */
  materialize(sha256: string, destPath: string): Promise<void>;
}
