import { Readable } from 'node:stream';
import type { BlobStore } from '../blob/blob-store.js';
import { ConflictError, NotFoundError, ValidationError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { nowIso, sleep, yieldToEventLoop } from '../core/time.js';
import {
  jobHasEnded,
  jobStateCounts,
  type Attempt,
  type ModuleSpec,
  type Replay,
  type ReplaySelector,
  type ReplayStatus,
} from '../core/types.js';
import type { CancelResult, DocumentStore } from '../store/document-store.js';
import { isoTime } from './event-queries.js';

/**
 * Replays, cancels and followed logs: the job operations of the management API that act on
 * jobs after they were created, free of HTTP.
 */

/** What `POST /v1/replays` asks for: one event, or every event of a type in a time range. */
export interface ReplayRequest {
  module: string;
  /** The module version to run; the current one when absent. */
  version?: number;
  eventId?: string;
  type?: string;
  since?: string;
  until?: string;
  /** Count the events it would replay, create nothing. */
  dryRun?: boolean;
}

export interface ReplayOutcome {
  replay: ReplayStatus;
  /** How many events the selector matched (jobs created, unless a dry run). */
  matched: number;
  dryRun: boolean;
}

/** Events read (and jobs created, in one transaction) per page of a backfill. */
const REPLAY_PAGE = 500;

/** The spec a replay runs: the asked-for version's, or the current one. */
async function replaySpec(
  store: DocumentStore,
  module: string,
  version: number | undefined,
): Promise<{ spec: ModuleSpec; version: number }> {
  const current = await store.getModule(module);
  if (current === null) throw new NotFoundError(`module "${module}" does not exist`);
  if (version === undefined || version === current.version)
    return { spec: current, version: current.version };
  const stored = (await store.listModuleVersions(module)).find((v) => v.version === version);
  if (stored === undefined) throw new NotFoundError(`module "${module}" has no version ${version}`);
  return { spec: stored.spec, version };
}

function selectorOf(request: ReplayRequest): ReplaySelector {
  const { eventId, type } = request;
  if ((eventId === undefined) === (type === undefined))
    throw new ValidationError('say what to replay: either eventId, or type (with since/until)', [
      {
        path: eventId === undefined ? 'type' : 'eventId',
        message: 'give exactly one of eventId and type',
      },
    ]);
  if (eventId !== undefined) {
    if (request.since !== undefined || request.until !== undefined)
      throw new ValidationError('since and until go with type, not with eventId', [
        { path: request.since === undefined ? 'until' : 'since', message: 'only with type' },
      ]);
    return { eventId };
  }
  const since = isoTime('since', request.since);
  const until = isoTime('until', request.until);
  if (since !== undefined && until !== undefined && since >= until)
    throw new ValidationError(`since (${since}) must be before until (${until})`, [
      { path: 'until', message: 'must be after since' },
    ]);
  return {
    type: type!,
    ...(since === undefined ? {} : { since }),
    ...(until === undefined ? {} : { until }),
  };
}

function subscribesCheck(spec: ModuleSpec, version: number, type: string): void {
  if (!spec.subscribes.includes(type))
    throw new ValidationError(
      `module "${spec.name}" (version ${version}) does not subscribe to "${type}" (it subscribes to ${spec.subscribes.join(', ')})`,
      [{ path: 'type', message: 'not an event type the module subscribes to' }],
    );
}

/**
 * Runs a module again on past events. Each selected event gets a new job, linked to the
 * event (and to the module's ordinary job on it), whose child events are new events that
 * flow downstream like any other. A backfill pages through the matching events, creating
 * each page's jobs in one transaction, so its jobs start while later pages are read.
 */
export async function startReplay(
  store: DocumentStore,
  request: ReplayRequest,
  onJobsCreated: () => void,
): Promise<ReplayOutcome> {
  const selector = selectorOf(request);
  const { spec, version } = await replaySpec(store, request.module, request.version);
  const replay: Replay = {
    replayId: newId(),
    module: spec.name,
    moduleVersion: request.version === undefined ? null : version,
    selector,
    jobs: 0,
    createdAt: nowIso(),
  };
  const dryRun = request.dryRun === true;
  let matched = 0;
  if ('eventId' in selector) {
    const event = await store.getEvent(selector.eventId);
    if (event === null) throw new NotFoundError(`event ${selector.eventId} does not exist`);
    subscribesCheck(spec, version, event.type);
    matched = 1;
    if (!dryRun) await store.addReplayJobs(replay, [event]);
  } else {
    subscribesCheck(spec, version, selector.type);
    let cursor: string | undefined;
    do {
      const page = await store.listEvents({
        type: selector.type,
        ...(selector.since === undefined ? {} : { since: selector.since }),
        ...(selector.until === undefined ? {} : { until: selector.until }),
        limit: REPLAY_PAGE,
        ...(cursor === undefined ? {} : { cursor }),
      });
      matched += page.events.length;
      if (!dryRun && page.events.length > 0) {
        await store.addReplayJobs(replay, page.events);
        onJobsCreated();
      }
      cursor = page.nextCursor ?? undefined;
      // Between pages, let the API, running jobs and their lease renewals have their turn.
      await yieldToEventLoop();
    } while (cursor !== undefined);
    // A replay that matched nothing is still recorded, so it can be looked up like any other.
    if (!dryRun && matched === 0) await store.addReplayJobs(replay, []);
  }
  if (dryRun) {
    return { replay: { ...replay, states: jobStateCounts() }, matched, dryRun };
  }
  onJobsCreated();
  const status = await store.getReplay(replay.replayId);
  if (status === null) throw new NotFoundError(`replay ${replay.replayId} vanished`);
  return { replay: status, matched, dryRun };
}

export async function getReplay(store: DocumentStore, replayId: string): Promise<ReplayStatus> {
  const replay = await store.getReplay(replayId);
  if (replay === null) throw new NotFoundError(`replay ${replayId} does not exist`);
  return replay;
}

/**
 * Cancels a job: a waiting one ends `cancelled` at once; a running one is stopped by its
 * worker within about a second (its process group is killed) and then ends `cancelled`,
 * unless it finished first. A job that already ended is a conflict.
 */
export async function cancelJob(
  store: DocumentStore,
  jobId: string,
): Promise<Exclude<CancelResult, { status: 'settled' }>> {
  const result = await store.requestCancel(jobId, nowIso());
  if (result === null) throw new NotFoundError(`job ${jobId} does not exist`);
  if (result.status === 'settled')
    throw new ConflictError(`job ${jobId} has already ended (${result.job.state})`);
  return result;
}

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
