import { execFile, spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import {
  appendFile,
  chmod,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsBlobStore } from '../../src/blob/fs/fs-blob-store.js';
import { blobStoreConformance } from './blob-store.suite.js';

blobStoreConformance('fs', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ion-fs-blobs-'));
  const blobs = new FsBlobStore({ dir });
  await blobs.start();
  return {
    blobs,
    async cleanup() {
      await blobs.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

/** A tmpfs on another device than the temp dir, to force the copy fallback (EXDEV). */
const otherDevice = ['/dev/shm'].find(
  (path) => existsSync(path) && statSync(path).dev !== statSync(tmpdir()).dev,
);

describe('FsBlobStore specifics', () => {
  let dir: string;
  let scratch: string;
  let blobs: FsBlobStore;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ion-fs-blobs-'));
    scratch = await mkdtemp(join(tmpdir(), 'ion-fs-scratch-'));
    blobs = new FsBlobStore({ dir });
    await blobs.start();
  });

  afterEach(async () => {
    await blobs.close();
    await rm(dir, { recursive: true, force: true });
    await rm(scratch, { recursive: true, force: true });
  });

  const blobPath = (sha: string): string =>
    join(dir, 'sha256', sha.slice(0, 2), sha.slice(2, 4), sha);

  it('keeps a blob at sha256/ab/cd/<hash> and read-only', async () => {
    const data = randomBytes(100);
    const { sha256 } = await blobs.put(Readable.from([data]));
    expect(sha256).toBe(createHash('sha256').update(data).digest('hex'));
    expect(await readFile(blobPath(sha256))).toEqual(data);
    expect((await stat(blobPath(sha256))).mode & 0o777).toBe(0o444);
  });

  it('leaves no temp file behind after a put, a duplicate put or a failed put', async () => {
    const data = randomBytes(5000);
    await blobs.put(Readable.from([data]));
    await blobs.put(Readable.from([data]));
    async function* failing(): AsyncGenerator<Uint8Array> {
      yield data;
      await Promise.resolve();
      throw new Error('boom');
    }
    await expect(blobs.put(failing())).rejects.toThrow('boom');
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
  });

  it('materialize hard-links the stored blob instead of copying it', async () => {
    const { sha256 } = await blobs.put(Readable.from([randomBytes(2000)]));
    const first = join(scratch, 'one', 'a.bin');
    const second = join(scratch, 'two', 'deeper', 'b.bin');
    await blobs.materialize(sha256, first);
    await blobs.materialize(sha256, second);
    const stored = await stat(blobPath(sha256));
    expect((await stat(first)).ino).toBe(stored.ino);
    expect((await stat(second)).ino).toBe(stored.ino);
    expect(stored.nlink).toBe(3);
  });

  it('verify removes a blob whose hard link was changed in place, so it is never served wrong', async () => {
    const { sha256 } = await blobs.put(Readable.from([Buffer.from('original')]));
    const linked = join(scratch, 'in', 'data.txt');
    await blobs.materialize(sha256, linked);
    await chmod(linked, 0o644); // what a process running as root could do anyway
    await appendFile(linked, ' and more');
    expect(await blobs.verify(sha256)).toBe(false);
    expect(await blobs.stat(sha256)).toBeNull();
  });

  it('materialize over its own earlier link leaves only the destination in its directory', async () => {
    const { sha256 } = await blobs.put(Readable.from([randomBytes(300)]));
    const dest = join(scratch, 'out', 'file.bin');
    await blobs.materialize(sha256, dest);
    await blobs.materialize(sha256, dest);
    expect(await readdir(dirname(dest))).toEqual(['file.bin']);
    expect((await stat(blobPath(sha256))).nlink).toBe(2);
  });

  it('putFile links the file into the store and makes it read-only', async () => {
    const file = join(scratch, 'input.bin');
    await writeFile(file, randomBytes(4000));
    const { sha256 } = await blobs.putFile(file);
    const stored = await stat(blobPath(sha256));
    const original = await stat(file);
    expect(original.ino).toBe(stored.ino);
    expect(stored.nlink).toBe(2);
    expect(stored.mode & 0o777).toBe(0o444);
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
  });

  it('putFile of content already stored adds no link to the new file', async () => {
    const data = randomBytes(1234);
    const { sha256 } = await blobs.put(Readable.from([data]));
    const file = join(scratch, 'copy.bin');
    await writeFile(file, data);
    expect((await blobs.putFile(file)).sha256).toBe(sha256);
    expect((await stat(file)).nlink).toBe(1);
    expect((await stat(blobPath(sha256))).nlink).toBe(1);
    expect(await readdir(join(dir, 'tmp'))).toEqual([]);
  });

  it.skipIf(otherDevice === undefined)(
    'putFile and materialize copy across filesystems',
    async () => {
      const remote = await mkdtemp(join(otherDevice ?? '', 'ion-fs-xdev-'));
      try {
        const data = randomBytes(10_000);
        const file = join(remote, 'input.bin');
        await writeFile(file, data);
        const { sha256 } = await blobs.putFile(file);
        expect((await stat(file)).nlink).toBe(1);
        expect(await readFile(blobPath(sha256))).toEqual(data);
        const dest = join(remote, 'out', 'file.bin');
        await blobs.materialize(sha256, dest);
        expect(await readFile(dest)).toEqual(data);
        expect((await stat(dest)).ino).not.toBe((await stat(blobPath(sha256))).ino);
      } finally {
        await rm(remote, { recursive: true, force: true });
      }
    },
  );

  it('works without start(): directories are created on the first put', async () => {
    const lazyDir = join(scratch, 'lazy-store');
    const lazy = new FsBlobStore({ dir: lazyDir });
    const ref = await lazy.put(Readable.from([Buffer.from('hello')]));
    expect(
      await readFile(
        join(lazyDir, 'sha256', ref.sha256.slice(0, 2), ref.sha256.slice(2, 4), ref.sha256),
        'utf8',
      ),
    ).toBe('hello');
  });
});

describe('FsBlobStore on a full disk', () => {
  // A real full filesystem: a 1 MiB tmpfs, mounted for the test (root can, as in CI here).
  let dir: string;
  let mounted = false;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ion-fs-full-'));
    mounted = await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
  });

  afterEach(async () => {
    if (mounted) await run('umount', [dir]);
    await rm(dir, { recursive: true, force: true });
  });

  it('answers unavailable (retryable) when the disk fills, and leaves no temporary file', async (ctx) => {
    if (!mounted) ctx.skip(); // no mount here: not root, or no tmpfs
    const blobs = new FsBlobStore({ dir });
    await blobs.start();
    try {
      const err = (await blobs
        .put(Readable.from([randomBytes(2 * 1024 * 1024)]))
        .catch((e: unknown) => e)) as Error & { code?: string; retryable?: boolean };
      expect(err.code).toBe('unavailable');
      expect(err.retryable).toBe(true);
      expect(err.message).toMatch(/put failed: .*ENOSPC/);
      expect(await readdir(join(dir, 'tmp'))).toEqual([]);
      // Freed, it stores again.
      const ref = await blobs.put(Readable.from([Buffer.from('small')]));
      expect(ref.size).toBe(5);
    } finally {
      await blobs.close();
    }
  });
});

function run(command: string, args: string[]): Promise<boolean> {
  return new Promise((resolve) => {
    execFile(command, args, (err) => resolve(err === null));
  });
}

describe('FsBlobStore start', () => {
  it("removes the temporary uploads of this host's dead processes, and only those", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ion-fs-tmp-'));
    try {
      const host = hostname().replace(/[^A-Za-z0-9-]/g, '_');
      // A pid that is surely dead: a process that ran and was waited for.
      const dead = await new Promise<number>((resolve) => {
        const child = spawn('true');
        child.once('exit', () => resolve(child.pid!));
      });
      const names = {
        dead: `${host}.${dead}.${randomUUID()}`,
        live: `${host}.${process.pid}.${randomUUID()}`,
        otherHost: `elsewhere.${dead}.${randomUUID()}`,
        older: randomUUID(), // named before hosts and pids were: left alone
      };
      await mkdir(join(dir, 'tmp'), { recursive: true });
      for (const name of Object.values(names)) await writeFile(join(dir, 'tmp', name), 'x');
      const blobs = new FsBlobStore({ dir });
      await blobs.start();
      await blobs.close();
      expect((await readdir(join(dir, 'tmp'))).sort()).toEqual(
        [names.live, names.otherHost, names.older].sort(),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
