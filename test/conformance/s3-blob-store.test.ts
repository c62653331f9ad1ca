import { createHash, randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { Readable } from 'node:stream';
import { contentKey } from '../../src/blob/hashing.js';
import { S3BlobStore, type S3BlobStoreOptions } from '../../src/blob/s3/s3-blob-store.js';
import { S3RVER_CREDENTIALS, startS3rver, type RunningS3rver } from '../support/emulators.js';
import { blobStoreConformance } from './blob-store.suite.js';

/**
 * Started once for the file. A start failure is not thrown from beforeAll (vitest would
 * then report the tests as skipped) but from every store creation, so every test fails.
 */
let s3rver: Promise<RunningS3rver>;

beforeAll(async () => {
  s3rver = startS3rver();
  await s3rver.catch(() => undefined);
});

afterAll(async () => {
  await s3rver.then(
    (running) => running.stop(),
    () => undefined,
  );
});

/** Options for a store on a fresh bucket of the running s3rver. */
async function storeOptions(
  overrides: Partial<S3BlobStoreOptions> = {},
): Promise<S3BlobStoreOptions> {
  const { endpoint } = await s3rver;
  return {
    bucket: `ion-test-${randomBytes(6).toString('hex')}`,
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
    // s3rver does not understand the aws-chunked encoding of the SDK's default checksums.
    checksums: 'when_required',
    ...overrides,
  };
}

blobStoreConformance('S3BlobStore', async () => {
  const blobs = new S3BlobStore(await storeOptions());
  await blobs.start();
  return {
    blobs,
    async cleanup() {
      await blobs.close();
    },
  };
});

describe('S3BlobStore specifics', () => {
  it('copies again over a damaged object of the wrong size under a content address', async () => {
    const options = await storeOptions();
    const blobs = new S3BlobStore(options);
    await blobs.start();
    const client = new S3Client({
      region: options.region,
      endpoint: options.endpoint,
      forcePathStyle: true,
      credentials: S3RVER_CREDENTIALS,
    });
    try {
      const body = randomBytes(4096);
      const ref = await blobs.put(Readable.from([body]));
      // Damage it: an empty object where the blob was (what a full object store left).
      await client.send(
        new PutObjectCommand({ Bucket: options.bucket, Key: contentKey('', ref.sha256), Body: '' }),
      );
      expect((await blobs.stat(ref.sha256))?.size).toBe(0);
      expect(await blobs.put(Readable.from([body]))).toEqual(ref);
      expect((await blobs.stat(ref.sha256))?.size).toBe(4096);
    } finally {
      client.destroy();
      await blobs.close();
    }
  });

  it('puts a 64 MiB generated stream with bounded memory and reads back its sha256', async () => {
    const partSizeBytes = 5 * MIB;
    const partConcurrency = 1;
    const blobs = new S3BlobStore(await storeOptions({ partSizeBytes, partConcurrency }));
    await blobs.start();
    try {
      const chunkBytes = 256 * 1024;
      const totalBytes = 64 * MIB;
      const expected = createHash('sha256');
      const collect = forceGc();
      collect();
      const baseline = liveBufferBytes();
      let peak = baseline;
      async function* produce(): AsyncGenerator<Uint8Array> {
        for (let i = 0; i < totalBytes / chunkBytes; i++) {
          const chunk = Buffer.alloc(chunkBytes, i % 251);
          chunk.writeUInt32BE(i, 0);
          expected.update(chunk);
          if (i % 8 === 0) {
            // Collect first: what is still alive is what the store holds on to.
            collect();
            peak = Math.max(peak, liveBufferBytes());
          }
          yield chunk;
          await Promise.resolve();
        }
      }
      const ref = await blobs.put(produce());
      const sha256 = expected.digest('hex');
      expect(ref).toEqual({ sha256, size: totalBytes });

      const out = createHash('sha256');
      let size = 0;
      for await (const chunk of await blobs.get(sha256)) {
        out.update(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
      expect({ sha256: out.digest('hex'), size }).toEqual(ref);

      // A store that buffered the stream would hold all 64 MiB live. A bounded one holds a
      // few parts: the one being assembled, the one in flight, and what s3rver (in this
      // process) has received but not yet written; about 10-23 MiB here.
      expect(peak - baseline).toBeLessThan(totalBytes / 2);
    } finally {
      await blobs.close();
    }
  });
});

const MIB = 1024 * 1024;

/** Bytes held by live Buffers and ArrayBuffers (where stream data lives). */
function liveBufferBytes(): number {
  return process.memoryUsage().arrayBuffers;
}

/**
 * A full garbage collection, so that a measurement sees live memory rather than garbage
 * V8 has not collected yet. `--expose-gc` set at run time applies to contexts created
 * afterwards, hence the new context.
 */
function forceGc(): () => void {
  setFlagsFromString('--expose-gc');
  const gc: unknown = runInNewContext('gc');
  if (typeof gc !== 'function') throw new Error('could not expose gc()');
  return gc as () => void;
}

describe('S3BlobStore against an object store that stops answering', () => {
  it('fails the call as unavailable once the connection is idle too long, instead of hanging', async () => {
    // A server that accepts connections and never answers: a hung object store.
    const held: Socket[] = [];
    const server = createServer((socket) => void held.push(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const blobs = new S3BlobStore({
      bucket: 'hung',
      region: 'us-east-1',
      endpoint: `http://127.0.0.1:${port}`,
      forcePathStyle: true,
      credentials: S3RVER_CREDENTIALS,
      idleTimeoutMs: 500,
    });
    try {
      const err = (await blobs.stat('a'.repeat(64)).catch((e: unknown) => e)) as Error & {
        code?: string;
      };
      expect(err.code).toBe('unavailable');
      expect(held.length).toBeGreaterThan(0); // it did reach the server, which never answered
    } finally {
      await blobs.close();
      for (const socket of held) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
