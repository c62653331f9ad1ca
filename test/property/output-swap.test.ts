import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BlobStore } from '../../src/blob/blob-store.js';
import { FsBlobStore } from '../../src/blob/fs/fs-blob-store.js';
import { collectJobDir } from '../../src/handler/collect.js';
import { jobLayout } from '../../src/handler/layout.js';

/**
 * Time of check to time of use: a module leaves a process behind that swaps an output file
 * for a symlink to a secret after collect walked out/data and before it stored the file. The
 * swap is made deterministic here by doing it inside the store callback, at the exact moment
 * between the check and the use. Whatever happens, the secret's bytes must not be stored.
 */
describe('an output file swapped for a symlink between check and store', () => {
  let root: string;
  let blobs: BlobStore;
  const SECRET = 'platform secret: never stored';

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'ion-swap-'));
    blobs = new FsBlobStore({ dir: join(root, 'blobs') });
    await blobs.start();
    await writeFile(join(root, 'secret.txt'), SECRET);
  });
  afterAll(async () => {
    await blobs.close();
    await rm(root, { recursive: true, force: true });
  });

  it('refuses the file instead of storing what the symlink points at', async () => {
    const base = join(root, 'job');
    const layout = jobLayout(base);
    await mkdir(layout.outData, { recursive: true });
    await mkdir(layout.outEvents, { recursive: true });
    const victim = join(layout.outData, 'report.txt');
    await writeFile(victim, 'honest output');
    const stored: string[] = [];
    const outcome = await collectJobDir(base, [], async (path) => {
      // The swap: replace the checked regular file by a symlink to the secret.
      await symlink(join(root, 'secret.txt'), `${victim}.tmp`);
      await rename(`${victim}.tmp`, victim);
      const ref = await blobs.putFile(path);
      stored.push(ref.sha256);
      return ref;
    }).then(
      () => 'stored',
      (err: Error) => err.message,
    );
    for (const sha of stored) {
      const chunks: Buffer[] = [];
      for await (const c of await blobs.get(sha)) chunks.push(Buffer.from(c as Uint8Array));
      expect(Buffer.concat(chunks).toString()).not.toContain(SECRET);
    }
    expect(outcome).toMatch(/symbolic link|not a regular file/);
  });
});
