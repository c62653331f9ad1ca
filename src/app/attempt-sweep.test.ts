import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sweepAttemptFiles } from './attempt-sweep.js';

describe('sweepAttemptFiles', () => {
  let dataDir: string;
  // Liveness as the store would answer it: job a's attempt 1 is dead, its attempt 2 live.
  const isAttemptLive = (jobId: string, attempt: number) =>
    Promise.resolve(!(jobId === 'a' && attempt === 1));

  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'ion-sweep-'));
    for (const dir of ['jobs/a/1/out/data', 'jobs/a/2/in', 'jobs/b/1']) {
      await mkdir(join(dataDir, dir), { recursive: true });
    }
    await mkdir(join(dataDir, 'logs/a'), { recursive: true });
    await mkdir(join(dataDir, 'logs/b'), { recursive: true });
    for (const file of ['logs/a/1.log', 'logs/a/2.log', 'logs/b/1.log', 'logs/a/notes.txt'])
      await writeFile(join(dataDir, file), 'x');
  });

  afterEach(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  it('removes the job directory and log of a dead attempt and nothing else', async () => {
    const removed = await sweepAttemptFiles({
      dataDir,
      isAttemptLive,
      keepJobDirs: false,
      logger: pino({ enabled: false }),
    });
    expect(removed).toBe(2);
    expect((await readdir(join(dataDir, 'jobs/a'))).sort()).toEqual(['2']);
    expect(await readdir(join(dataDir, 'jobs/b'))).toEqual(['1']);
    expect((await readdir(join(dataDir, 'logs/a'))).sort()).toEqual(['2.log', 'notes.txt']);
    expect(await readdir(join(dataDir, 'logs/b'))).toEqual(['1.log']);
  });

  it('keeps every job directory when keepJobDirs is set, and still removes dead logs', async () => {
    const removed = await sweepAttemptFiles({
      dataDir,
      isAttemptLive,
      keepJobDirs: true,
      logger: pino({ enabled: false }),
    });
    expect(removed).toBe(1);
    expect((await readdir(join(dataDir, 'jobs/a'))).sort()).toEqual(['1', '2']);
    expect((await readdir(join(dataDir, 'logs/a'))).sort()).toEqual(['2.log', 'notes.txt']);
  });

  it('does nothing on a fresh data dir', async () => {
    const fresh = await mkdtemp(join(tmpdir(), 'ion-sweep-fresh-'));
    try {
      expect(
        await sweepAttemptFiles({
          dataDir: fresh,
          isAttemptLive,
          keepJobDirs: false,
          logger: pino({ enabled: false }),
        }),
      ).toBe(0);
    } finally {
      await rm(fresh, { recursive: true, force: true });
    }
  });
});
