import type { Readable } from 'node:stream';
import type { BlobStore } from '../blob/blob-store.js';
import { NotFoundError } from '../core/errors.js';
import type { BlobRef } from '../core/types.js';

/** The blob operations of the management API: upload, download and look-up by address. */
export class Blobs {
  constructor(private readonly blobs: BlobStore) {}

  put(source: Readable): Promise<BlobRef> {
    return this.blobs.put(source);
  }

  async get(
    sha256: string,
    range?: { start: number; end: number },
  ): Promise<{ ref: BlobRef; stream: Readable }> {
    const ref = await this.stat(sha256);
    return { ref, stream: await this.blobs.get(sha256, range) };
  }

  async stat(sha256: string): Promise<BlobRef> {
    const ref = await this.blobs.stat(sha256);
    if (ref === null) throw new NotFoundError(`blob ${sha256} does not exist`);
    return ref;
  }
}
