import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FsBlobStore } from '../blob/fs/fs-blob-store.js';
import { keepAttemptLog } from './attempt-progress.js';

function run(command: string, args: string[]): Promise<boolean> {
  return new Promise((resolve) => {
    execFile(command, args, (err) => resolve(err === null));
  });
}

/** Fills the filesystem under `dir` until ENOSPC. */
async function fill(dir: string): Promise<void> {
  await writeFile(join(dir, 'filler'), randomBytes(4 * 1024 * 1024)).catch(() => undefined);
}

describe('keepAttemptLog with the blob store on a full disk', () => {
  // A real full filesystem: a 1 MiB tmpfs holds the blob store (root can mount, as in CI).
  let blobDir: string;
  let scratch: string;
  let mounted = false;
  let blobs: FsBlobStore;
  let logFile: string;
  const log = randomBytes(64 * 1024);
  const logger = pino({ level: 'silent' });

  beforeEach(async () => {
    blobDir = await mkdtemp(join(tmpdir(), 'ion-keep-log-blobs-'));
    scratch = await mkdtemp(join(tmpdir(), 'ion-keep-log-'));
    mounted = await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', blobDir]);
    blobs = new FsBlobStore({ dir: blobDir });
    await blobs.start();
    logFile = join(scratch, 'logs', 'job-1', '1.log');
    await mkdir(join(scratch, 'logs', 'job-1'), { recursive: true });
    await writeFile(logFile, log);
  });

  afterEach(async () => {
    await blobs.close();
    if (mounted) await run('umount', [blobDir]);
    await rm(blobDir, { recursive: true, force: true });
    await rm(scratch, { recursive: true, force: true });
  });

  it('tries again while the disk is full and stores the log once it is freed', async (ctx) => {
    if (!mounted) ctx.skip(); // no mount here: not root, or no tmpfs
    await fill(blobDir);
    const waits: number[] = [];
    const sha = await keepAttemptLog(blobs, logger, logFile, (failures) => {
      waits.push(failures);
      if (failures === 2) rmSync(join(blobDir, 'filler')); // freed before the next try
      return 10;
    });
    expect(waits).toEqual([1, 2]); // two failures, then stored
    expect(sha).toBe(createHash('sha256').update(log).digest('hex'));
    const stored = join(blobDir, 'sha256', sha!.slice(0, 2), sha!.slice(2, 4), sha!);
    expect((await readFile(stored)).equals(log)).toBe(true);
    expect(existsSync(logFile)).toBe(false);
    expect(existsSync(join(scratch, 'logs', 'job-1'))).toBe(false);
  });

  it('gives up after a bounded number of tries and still removes the file', async (ctx) => {
    if (!mounted) ctx.skip();
    await fill(blobDir);
    const waits: number[] = [];
    const sha = await keepAttemptLog(blobs, logger, logFile, (failures) => {
      waits.push(failures);
      return 10;
    });
    expect(sha).toBeNull();
    expect(waits).toEqual([1, 2, 3, 4]);
    expect(existsSync(logFile)).toBe(false); // the tail is in the store; no file is left
  });
});

describe('keepAttemptLog', () => {
  it('stores nothing for an empty or missing log, and does not retry', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ion-keep-log-empty-'));
    const blobs = new FsBlobStore({ dir: join(dir, 'blobs') });
    await blobs.start();
    try {
      const empty = join(dir, 'empty.log');
      await writeFile(empty, '');
      const waits: number[] = [];
      const delay = (n: number): number => (waits.push(n), 10);
      const logger = pino({ level: 'silent' });
      expect(await keepAttemptLog(blobs, logger, empty, delay)).toBeNull();
      expect(existsSync(empty)).toBe(false);
      expect(await keepAttemptLog(blobs, logger, join(dir, 'missing.log'), delay)).toBeNull();
      expect(waits).toEqual([]);
    } finally {
      await blobs.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
