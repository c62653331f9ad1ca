import { readdir, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';

export interface AttemptSweepOptions {
  dataDir: string;
  /** Whether an attempt may still use its files (see `attemptLiveness`). */
  isAttemptLive: (jobId: string, attempt: number) => Promise<boolean>;
  /** `dispatcher.keepJobDirs`: job directories are the user's to keep. */
  keepJobDirs: boolean;
  logger: Logger;
}

/**
 * Removes what attempts that can no longer run left under the data dir: their job
 * directories (`jobs/<jobId>/<attempt>/`) and attempt logs (`logs/<jobId>/<attempt>.log`).
 * A worker removes both when an attempt ends; a worker killed mid-attempt (SIGKILL, a
 * crash) cannot, and nothing else would (the soak found 42 logs left by one run).
 *
 * An attempt counts as gone when the store has it ended, or running under a worker of this
 * host whose process is dead; one the store does not know, or a live or other host's worker
 * holds, is left alone. Run at a worker's start. Returns how many it removed.
 */
export async function sweepAttemptFiles(options: AttemptSweepOptions): Promise<number> {
  const { dataDir, isAttemptLive } = options;
  let removed = 0;
  const gone = async (jobId: string, attempt: string): Promise<boolean> =>
    /^\d+$/.test(attempt) && !(await isAttemptLive(jobId, Number(attempt)));
  if (!options.keepJobDirs) {
    for (const jobId of await names(join(dataDir, 'jobs'))) {
      for (const attempt of await names(join(dataDir, 'jobs', jobId))) {
        if (!(await gone(jobId, attempt))) continue;
        await rm(join(dataDir, 'jobs', jobId, attempt), { recursive: true, force: true });
        removed += 1;
      }
      await rmdir(join(dataDir, 'jobs', jobId)).catch(() => undefined); // kept when not empty
    }
  }
  for (const jobId of await names(join(dataDir, 'logs'))) {
    for (const file of await names(join(dataDir, 'logs', jobId))) {
      const attempt = /^(\d+)\.log$/.exec(file)?.[1];
      if (attempt === undefined || !(await gone(jobId, attempt))) continue;
      await rm(join(dataDir, 'logs', jobId, file), { force: true });
      removed += 1;
    }
  }
  if (removed > 0)
    options.logger.info({ removed }, 'removed the files of attempts whose worker died');
  return removed;
}

async function names(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => [] as string[]);
}
