import { Readable } from 'node:stream';
import type { BlobStore } from '../blob/blob-store.js';
import { NotFoundError } from '../core/errors.js';
import { sleep } from '../core/time.js';
import { jobHasEnded, type Attempt } from '../core/types.js';
import type { DocumentStore } from '../store/document-store.js';

/** How often a followed log looks for more output. */
const FOLLOW_POLL_MS = 500;

/**
 * Follows a job's log live: the log of the asked-for attempt, or of the latest one and then
 * of each retry until the job ends. While an attempt runs its worker stores the last 64 KiB
 * of its log about once a second; output faster than that shows as a `[ion: N bytes of log
 * skipped]` line. Once the attempt ends, the rest comes from its kept log. Ends when the
 * attempt (or, without an attempt number, the job) ends, or when `signal` aborts.
 */
export async function followJobLog(
  store: DocumentStore,
  blobs: BlobStore,
  jobId: string,
  attemptNo: number | undefined,
  signal: AbortSignal,
): Promise<{ attempt: number | null; stream: Readable }> {
  const job = await store.getJob(jobId);
  if (job === null) throw new NotFoundError(`job ${jobId} does not exist`);
  const attempts = await store.listAttempts(jobId);
  if (attemptNo !== undefined && !attempts.some((a) => a.attempt === attemptNo))
    throw new NotFoundError(`job ${jobId} has no attempt ${attemptNo}`);
  const first = attemptNo ?? attempts[attempts.length - 1]?.attempt ?? null;

  async function* chunks(): AsyncGenerator<Buffer | string> {
    let current = first;
    for (;;) {
      if (current === null) {
        // No attempt yet: wait for the first one, unless the job ends without any.
        current = await nextAttempt(store, jobId, 0, signal);
        if (current === null) return;
      }
      yield* followAttempt(store, blobs, jobId, current, signal);
      if (attemptNo !== undefined || signal.aborted) return;
      const next = await nextAttempt(store, jobId, current, signal);
      if (next === null) return;
      yield `\n[ion: attempt ${next} started]\n`;
      current = next;
    }
  }
  return { attempt: first, stream: Readable.from(chunks(), { objectMode: false }) };
}

/** Waits for an attempt numbered above `after`; null once the job has ended without one. */
async function nextAttempt(
  store: DocumentStore,
  jobId: string,
  after: number,
  signal: AbortSignal,
): Promise<number | null> {
  while (!signal.aborted) {
    const attempts = await store.listAttempts(jobId);
    const later = attempts.find((a) => a.attempt > after);
    if (later !== undefined) return later.attempt;
    const job = await store.getJob(jobId);
    if (job === null || jobHasEnded(job.state)) return null;
    await sleep(FOLLOW_POLL_MS, signal);
  }
  return null;
}

async function* followAttempt(
  store: DocumentStore,
  blobs: BlobStore,
  jobId: string,
  attemptNo: number,
  signal: AbortSignal,
): AsyncGenerator<Buffer | string> {
  let sent = 0;
  while (!signal.aborted) {
    const attempt = (await store.listAttempts(jobId)).find((a) => a.attempt === attemptNo);
    if (attempt === undefined) return;
    if (attempt.outcome !== 'running') {
      yield* finishedRest(blobs, attempt, sent);
      return;
    }
    if (attempt.logSize !== null && attempt.logSize > sent) {
      const tail = Buffer.from(attempt.logTail, 'utf8');
      const tailStart = Math.max(0, attempt.logSize - tail.length);
      if (sent < tailStart) {
        yield `\n[ion: ${tailStart - sent} bytes of log skipped]\n`;
        sent = tailStart;
      }
      yield tail.subarray(sent - tailStart);
      sent = attempt.logSize;
    }
    await sleep(FOLLOW_POLL_MS, signal);
  }
}

/** What is left of a finished attempt's log after `sent` bytes: from its kept log, or its tail. */
async function* finishedRest(
  blobs: BlobStore,
  attempt: Attempt,
  sent: number,
): AsyncGenerator<Buffer | string> {
  const kept = attempt.logBlob === null ? null : await blobs.stat(attempt.logBlob);
  if (kept !== null && attempt.logBlob !== null) {
    if (sent < kept.size)
      yield* await blobs.get(attempt.logBlob, { start: sent, end: kept.size - 1 });
    return;
  }
  if (sent === 0 && attempt.logTail !== '') yield attempt.logTail;
}
