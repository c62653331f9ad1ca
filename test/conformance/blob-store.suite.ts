import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BlobStore } from '../../src/blob/blob-store.js';

/** What a blob store adapter's test file hands to {@link blobStoreConformance}. */
export interface BlobStoreFixture {
  blobs: BlobStore;
  /** Closes the store and removes whatever the factory created. */
  cleanup(): Promise<void>;
}

/**
 * The blob store conformance suite, run against every adapter (fs, S3, Azure). It only
 * speaks through the {@link BlobStore} port: it never looks at where or how blobs are kept.
 * Local files (for `putFile` and `materialize`) live in a temp dir of the test itself.
 *
 * `factory` is called once per test and must return a started, empty store.
 */
export function blobStoreConformance(name: string, factory: () => Promise<BlobStoreFixture>): void {
  describe(`BlobStore conformance: ${name}`, () => {
    let blobs: BlobStore;
    let fixture: BlobStoreFixture;
    let scratch: string;

    beforeEach(async () => {
      fixture = await factory();
      blobs = fixture.blobs;
      scratch = await mkdtemp(join(tmpdir(), 'ion-blob-suite-'));
    });

    afterEach(async () => {
      await fixture.cleanup();
      await rm(scratch, { recursive: true, force: true });
    });

    it('put then get returns the same bytes under their sha256', async () => {
      const data = randomBytes(10_000);
      const ref = await blobs.put(Readable.from([data]));
      expect(ref).toEqual({ sha256: sha256(data), size: data.length });
      expectSameBytes(await readAll(await blobs.get(ref.sha256)), data);
    });

    it('stores the empty blob', async () => {
      const ref = await blobs.put(Readable.from([Buffer.alloc(0)]));
      expect(ref).toEqual({ sha256: sha256(Buffer.alloc(0)), size: 0 });
      expect((await readAll(await blobs.get(ref.sha256))).length).toBe(0);
    });

    it('storing the same content twice returns the same reference', async () => {
      const data = randomBytes(4096);
      const first = await blobs.put(Readable.from([data]));
      const second = await blobs.put(Readable.from([data.subarray(0, 1000), data.subarray(1000)]));
      expect(second).toEqual(first);
      expect(await blobs.stat(first.sha256)).toEqual(first);
    });

    it('concurrent puts of the same content all succeed with one reference', async () => {
      const data = randomBytes(200_000);
      const refs = await Promise.all(
        Array.from({ length: 5 }, () => blobs.put(Readable.from([data]))),
      );
      for (const ref of refs) expect(ref).toEqual({ sha256: sha256(data), size: data.length });
      expectSameBytes(await readAll(await blobs.get(sha256(data))), data);
    });

    it('streams a multi-MiB source produced by a generator and streams it back', async () => {
      const chunkCount = 96; // 96 x 64 KiB = 6 MiB
      const expected = createHash('sha256');
      async function* produce(): AsyncGenerator<Uint8Array> {
        for (let i = 0; i < chunkCount; i++) {
          const chunk = Buffer.alloc(64 * 1024, i % 251);
          chunk.writeUInt32BE(i, 0);
          expected.update(chunk);
          yield chunk;
          await Promise.resolve();
        }
      }
      const ref = await blobs.put(produce());
      const size = chunkCount * 64 * 1024;
      expect(ref).toEqual({ sha256: expected.digest('hex'), size });
      expect(await blobs.stat(ref.sha256)).toEqual(ref);
      const out = createHash('sha256');
      let outSize = 0;
      for await (const chunk of await blobs.get(ref.sha256)) {
        out.update(chunk as Buffer);
        outSize += (chunk as Buffer).length;
      }
      expect({ sha256: out.digest('hex'), size: outSize }).toEqual(ref);
    });

    it('a failing source stores nothing and rejects with its error', async () => {
      const prefix = randomBytes(1000);
      async function* failing(): AsyncGenerator<Uint8Array> {
        yield prefix;
        await Promise.resolve();
        throw new Error('source broke');
      }
      await expect(blobs.put(failing())).rejects.toThrow('source broke');
      expect(await blobs.stat(sha256(prefix))).toBeNull();
    });

    it('get with an inclusive range returns exactly those bytes', async () => {
      const data = Buffer.from('0123456789abcdef');
      const { sha256: sha } = await blobs.put(Readable.from([data]));
      expect((await readAll(await blobs.get(sha, { start: 2, end: 5 }))).toString()).toBe('2345');
      expect((await readAll(await blobs.get(sha, { start: 0, end: 0 }))).toString()).toBe('0');
      expect((await readAll(await blobs.get(sha, { start: 15, end: 15 }))).toString()).toBe('f');
    });

    it('a range ending past the last byte is clamped like HTTP', async () => {
      const data = Buffer.from('0123456789');
      const { sha256: sha } = await blobs.put(Readable.from([data]));
      expect((await readAll(await blobs.get(sha, { start: 7, end: 1000 }))).toString()).toBe('789');
    });

    it('refuses invalid ranges', async () => {
      const { sha256: sha } = await blobs.put(Readable.from([Buffer.from('0123456789')]));
      for (const range of [
        { start: 5, end: 2 },
        { start: -1, end: 2 },
        { start: 1.5, end: 3 },
        { start: 10, end: 12 },
      ]) {
        await expect(blobs.get(sha, range), JSON.stringify(range)).rejects.toMatchObject({
          code: 'validation_failed',
        });
      }
    });

    it('stat returns null for an absent blob and the reference for a present one', async () => {
      const data = randomBytes(123);
      expect(await blobs.stat(sha256(data))).toBeNull();
      await blobs.put(Readable.from([data]));
      expect(await blobs.stat(sha256(data))).toEqual({ sha256: sha256(data), size: 123 });
    });

    it('verify reports an intact blob as true and an absent one as false', async () => {
      const data = randomBytes(321);
      expect(await blobs.verify(sha256(data))).toBe(false);
      await blobs.put(Readable.from([data]));
      expect(await blobs.verify(sha256(data))).toBe(true);
      expect(await blobs.stat(sha256(data))).not.toBeNull();
    });

    it('get and materialize of an absent blob reject with not_found', async () => {
      const absent = sha256(randomBytes(32));
      await expect(blobs.get(absent)).rejects.toMatchObject({ code: 'not_found' });
      await expect(blobs.get(absent, { start: 0, end: 1 })).rejects.toMatchObject({
        code: 'not_found',
      });
      await expect(blobs.materialize(absent, join(scratch, 'x'))).rejects.toMatchObject({
        code: 'not_found',
      });
    });

    it('refuses a sha256 that is not 64 lowercase hex digits', async () => {
      const valid = sha256(Buffer.from('x'));
      const invalid = [
        '',
        '../../etc/passwd',
        valid.toUpperCase(),
        valid.slice(1),
        `${valid}0`,
        `${valid.slice(0, 62)}/.`,
      ];
      for (const bad of invalid) {
        await expect(blobs.stat(bad), `stat ${bad}`).rejects.toMatchObject({
          code: 'validation_failed',
        });
        await expect(blobs.get(bad), `get ${bad}`).rejects.toMatchObject({
          code: 'validation_failed',
        });
        await expect(
          blobs.materialize(bad, join(scratch, 'x')),
          `materialize ${bad}`,
        ).rejects.toMatchObject({
          code: 'validation_failed',
        });
      }
    });

    it('materialize writes the exact bytes into nested directories it creates', async () => {
      const data = randomBytes(50_000);
      const ref = await blobs.put(Readable.from([data]));
      const dest = join(scratch, 'a', 'b', 'c', 'file.bin');
      await blobs.materialize(ref.sha256, dest);
      expectSameBytes(await readFile(dest), data);
    });

    it('materialize replaces an existing destination', async () => {
      const data = randomBytes(1000);
      const ref = await blobs.put(Readable.from([data]));
      const dest = join(scratch, 'out', 'file.bin');
      await blobs.materialize(ref.sha256, dest);
      await blobs.materialize(ref.sha256, dest);
      expectSameBytes(await readFile(dest), data);
      const other = join(scratch, 'other.bin');
      await writeFile(other, 'something else entirely');
      await blobs.materialize(ref.sha256, other);
      expectSameBytes(await readFile(other), data);
    });

    it('putFile stores a local file under its sha256', async () => {
      const data = randomBytes(300_000);
      const file = join(scratch, 'input.bin');
      await writeFile(file, data);
      const ref = await blobs.putFile(file);
      expect(ref).toEqual({ sha256: sha256(data), size: data.length });
      expectSameBytes(await readAll(await blobs.get(ref.sha256)), data);
      expect(await blobs.put(Readable.from([data]))).toEqual(ref);
    });

    it('putFile of a file whose content is stored already returns the same reference', async () => {
      const data = randomBytes(777);
      const ref = await blobs.put(Readable.from([data]));
      const file = join(scratch, 'dup.bin');
      await writeFile(file, data);
      expect(await blobs.putFile(file)).toEqual(ref);
    });

    it('putFile of a missing file rejects with not_found', async () => {
      await expect(blobs.putFile(join(scratch, 'missing.bin'))).rejects.toMatchObject({
        code: 'not_found',
      });
    });

    it('close is idempotent', async () => {
      await blobs.close();
      await expect(blobs.close()).resolves.toBeUndefined();
    });
  });
}

/** Compares by length and hash: a deep equal of large buffers is slow in vitest. */
function expectSameBytes(actual: Buffer, expected: Buffer): void {
  expect(actual.length).toBe(expected.length);
  expect(sha256(actual)).toBe(sha256(expected));
}

function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
