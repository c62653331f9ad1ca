import type { Readable } from 'node:stream';
import { ConflictError, NotFoundError } from '../core/errors.js';
import { nowIso } from '../core/time.js';
import type { Attempt, Job } from '../core/types.js';
import type { CancelResult, JobFilter } from '../store/document-store.js';
import { checkLimit, type ControlDeps } from './control-deps.js';
import { isoTime } from './event-queries.js';
import { followJobLog } from './job-log-follow.js';

/** The job operations of the management API: list, look up, read or follow a log, cancel. */
export class Jobs {
  constructor(private readonly deps: Pick<ControlDeps, 'store' | 'blobs'>) {}

  /** Jobs, most recently updated first; `since`/`until` bound when they last changed. */
  list(filter: JobFilter): Promise<Job[]> {
    checkLimit(filter.limit);
    const since = isoTime('since', filter.since);
    const until = isoTime('until', filter.until);
    return this.deps.store.listJobs({
      ...filter,
      ...(since === undefined ? {} : { since }),
      ...(until === undefined ? {} : { until }),
    });
  }

  async get(jobId: string): Promise<{ job: Job; attempts: Attempt[] }> {
    const job = await this.deps.store.getJob(jobId);
    if (job === null) throw new NotFoundError(`job ${jobId} does not exist`);
    return { job, attempts: await this.deps.store.listAttempts(jobId) };
  }

  /** The log of one attempt (the last by default): the whole kept log, or its tail. */
  async log(
    jobId: string,
    attemptNo?: number,
  ): Promise<{ attempt: Attempt; stream: Readable | null }> {
    const { attempts } = await this.get(jobId);
    const attempt =
      attemptNo === undefined
        ? attempts[attempts.length - 1]
        : attempts.find((a) => a.attempt === attemptNo);
    if (attempt === undefined)
      throw new NotFoundError(
        attemptNo === undefined
          ? `job ${jobId} has no attempts yet`
          : `job ${jobId} has no attempt ${attemptNo}`,
      );
    if (attempt.logBlob !== null && (await this.deps.blobs.stat(attempt.logBlob)) !== null) {
      return { attempt, stream: await this.deps.blobs.get(attempt.logBlob) };
    }
    return { attempt, stream: null };
  }

  /** Follows a job's log live (see {@link followJobLog}). */
  followLog(
    jobId: string,
    attempt: number | undefined,
    signal: AbortSignal,
  ): Promise<{ attempt: number | null; stream: Readable }> {
    return followJobLog(this.deps.store, this.deps.blobs, jobId, attempt, signal);
  }

  /**
   * Cancels a job: a waiting one ends `cancelled` at once; a running one is stopped by its
   * worker within about a second (its process group is killed) and then ends `cancelled`,
   * unless it finished first. A job that already ended is a conflict.
   */
  async cancel(jobId: string): Promise<Exclude<CancelResult, { status: 'settled' }>> {
    const result = await this.deps.store.requestCancel(jobId, nowIso());
    if (result === null) throw new NotFoundError(`job ${jobId} does not exist`);
    if (result.status === 'settled')
      throw new ConflictError(`job ${jobId} has already ended (${result.job.state})`);
    return result;
  }
}
