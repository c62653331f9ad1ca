import { jobIdFor } from './ids.js';
import type { DeadLetter, Job, JobState } from './types.js';
import { jobHasEnded } from './types.js';

/**
 * The job lifecycle, decided once: which state transition `beginAttempt`, `renewAttempt`,
 * `requestCancel`, `failAttempt`, `commitAttempt`, a redrive and a replay make, given what
 * the store read. Every function here is pure; each document store reads the rows it needs
 * (in its own dialect, under its own locks), asks this module what to do, and persists the
 * answer. So the SQLite and PostgreSQL stores cannot drift apart on a rule or a wording.
 */

/**
 * The one wording of each failure kind a store writes itself (the attempt's `error`, the
 * job's `lastError`). Users see these in the API, the CLI and the dashboard.
 */
export const LIFECYCLE_MESSAGES = {
  /** A running attempt whose lease lapsed: its worker died or lost the store. */
  worker_lost: 'the worker running this attempt stopped before it finished',
  /** A job cancelled by `requestCancel` (or whose worker died after the cancel was asked). */
  cancelled: 'cancelled on request',
} as const;

/** What the lifecycle needs to know of a stored job. */
export interface JobSnapshot {
  state: JobState;
  attempts: number;
  failuresSinceRedrive: number;
  cancelRequestedAt: string | null;
}

/** The newest running attempt of a job whose lease has not lapsed yet. */
export interface LiveAttempt {
  attempt: number;
  leaseUntil: string;
}

// -- begin ---------------------------------------------------------------------------------

/**
 * First step of `beginAttempt`, before any attempt is read: a new job is created with its
 * first attempt; an ended job is left alone (the delivery is a duplicate, its status says
 * why); any other job has its attempts checked ({@link decideReclaim}).
 */
export type BeginStep =
  | { kind: 'create'; attempt: 1; failures: 0 }
  | { kind: 'ended'; status: 'succeeded' | 'dead_lettered' | 'cancelled' }
  | { kind: 'check_attempts' };

export function decideBegin(job: null): Extract<BeginStep, { kind: 'create' }>;
export function decideBegin(job: JobSnapshot | null): BeginStep;
export function decideBegin(job: JobSnapshot | null): BeginStep {
  if (job === null) return { kind: 'create', attempt: 1, failures: 0 };
  if (job.state === 'succeeded' || job.state === 'dead_lettered' || job.state === 'cancelled') {
    return { kind: 'ended', status: job.state };
  }
  return { kind: 'check_attempts' };
}

/**
 * Second step: another worker holding a live lease makes this delivery wait (`busy`);
 * otherwise every attempt still marked running is closed as `worker_lost` (counted as a
 * failure) and {@link decideRestart} says what follows.
 */
export type ReclaimStep =
  | { kind: 'busy'; attempt: number; leaseUntil: string }
  | {
      kind: 'close_lost';
      /** What the lost attempts are closed with. */
      errorCode: 'worker_lost';
      errorKind: 'platform';
      error: string;
      countsAsFailure: true;
    };

export function decideReclaim(live: LiveAttempt | null): ReclaimStep {
  if (live !== null) return { kind: 'busy', attempt: live.attempt, leaseUntil: live.leaseUntil };
  return {
    kind: 'close_lost',
    errorCode: 'worker_lost',
    errorKind: 'platform',
    error: LIFECYCLE_MESSAGES.worker_lost,
    countsAsFailure: true,
  };
}

/**
 * Last step, once `lost` running attempts were closed: a job whose cancel was asked for
 * ends cancelled here (its worker died before finishing the cancel); any other starts its
 * next attempt, the lost ones added to its failures, and shows the loss as its last error.
 */
export type RestartStep =
  | { kind: 'cancel'; state: 'cancelled'; lastError: string }
  | {
      kind: 'start';
      state: 'running';
      attempt: number;
      failures: number;
      /** The new `lastError`, or null to keep the stored one. */
      lastError: string | null;
    };

export function decideRestart(job: JobSnapshot, lost: number): RestartStep {
  if (job.cancelRequestedAt !== null) {
    return { kind: 'cancel', state: 'cancelled', lastError: LIFECYCLE_MESSAGES.cancelled };
  }
  return {
    kind: 'start',
    state: 'running',
    attempt: job.attempts + 1,
    failures: job.failuresSinceRedrive + lost,
    lastError: lost > 0 ? LIFECYCLE_MESSAGES.worker_lost : null,
  };
}

// -- renew and cancel ------------------------------------------------------------------------

/** `renewAttempt`'s answer: whether the attempt was still running, then whether to cancel. */
export function renewOutcome(
  stillRunning: boolean,
  cancelRequestedAt: string | null | undefined,
): 'held' | 'closed' | 'cancel_requested' {
  if (!stillRunning) return 'closed';
  return cancelRequestedAt == null ? 'held' : 'cancel_requested';
}

/**
 * `requestCancel`: an ended job is left as it is; a running one is flagged for its worker
 * (first request wins); a waiting one (pending, or failed with a retry due) ends now.
 */
export type CancelStep =
  | { kind: 'settled' }
  | { kind: 'flag' }
  | { kind: 'cancel'; state: 'cancelled'; lastError: string };

export function decideCancel(state: JobState): CancelStep {
  if (jobHasEnded(state)) return { kind: 'settled' };
  if (state === 'running') return { kind: 'flag' };
  return { kind: 'cancel', state: 'cancelled', lastError: LIFECYCLE_MESSAGES.cancelled };
}

// -- fail and commit -------------------------------------------------------------------------

/** The parts of a failure report the lifecycle decides on (the port's `FailAttemptInput`). */
export interface FailureReport {
  jobId: string;
  finishedAt: string;
  error: string;
  logTail: string;
  nextState: Extract<JobState, 'failed' | 'pending' | 'dead_lettered' | 'cancelled'>;
  countsAsFailure: boolean;
  deadLetterReason?: string;
}

/**
 * `failAttempt`, once the store tried to close the reported attempt: a late report (the
 * attempt was no longer running, e.g. closed as worker_lost, or the job succeeded through
 * another attempt) changes nothing more. Otherwise the job moves to the state the worker
 * asked for, unless a cancel was asked for while the attempt ran (a cancel wins over a
 * retry or a dead letter); a dead-lettered job gets its dead letter in the same
 * transaction, and an ended job may settle its trace.
 */
export type FailStep =
  | { kind: 'ignore' }
  | {
      kind: 'fail';
      state: FailureReport['nextState'];
      lastError: string;
      /** Added to the job's failures since its last redrive. */
      failuresAdded: 0 | 1;
      deadLetter: DeadLetter | null;
      /** Whether the job ended, so the store checks its trace's settlement. */
      ended: boolean;
    };

export function decideFailure(job: Job, report: FailureReport, attemptClosed: boolean): FailStep {
  if (!attemptClosed || job.state === 'succeeded') return { kind: 'ignore' };
  const state = job.cancelRequestedAt === null ? report.nextState : 'cancelled';
  const deadLetter =
    state !== 'dead_lettered'
      ? null
      : {
          id: report.jobId,
          jobId: report.jobId,
          module: job.module,
          eventId: job.eventId,
          reason: report.deadLetterReason ?? report.error,
          attempts: job.attempts,
          logTail: report.logTail,
          createdAt: report.finishedAt,
        };
  return {
    kind: 'fail',
    state,
    lastError: report.error,
    failuresAdded: report.countsAsFailure ? 1 : 0,
    deadLetter,
    ended: jobHasEnded(state),
  };
}

/**
 * How `commitAttempt` closes a second attempt of a job that another attempt already
 * committed (its lease had lapsed, so both ran): failed, not counted, its outputs dropped.
 * Without it, the attempt would stay `running` for good.
 */
export function supersededAttempt(attempt: number): {
  errorCode: 'conflict';
  errorKind: 'platform';
  error: string;
  countsAsFailure: false;
} {
  return {
    errorCode: 'conflict',
    errorKind: 'platform',
    countsAsFailure: false,
    error: `another attempt of this job succeeded first; attempt ${attempt}'s outputs were not kept`,
  };
}

/**
 * `commitAttempt`: a job that already succeeded is returned as it is (the commit is
 * idempotent; a second attempt still running is closed, see {@link supersededAttempt});
 * otherwise it is committed. Insights are written only when the job has none
 * yet, so a commit repeated after a crash does not store them twice.
 */
export function decideCommit(
  state: JobState,
  hasInsights: boolean,
): { kind: 'already_succeeded' } | { kind: 'commit'; state: 'succeeded'; writeInsights: boolean } {
  if (state === 'succeeded') return { kind: 'already_succeeded' };
  return { kind: 'commit', state: 'succeeded', writeInsights: !hasInsights };
}

// -- redrive and replay ----------------------------------------------------------------------

/**
 * A redrive moves the job back to `pending` with a fresh failure budget and sends it to its
 * module's subscription only; a replayed job's outbox row names the job, so the worker runs
 * that job and not the module's ordinary one.
 */
export function redrivePlan(job: Pick<Job, 'jobId' | 'module' | 'replayId'>): {
  state: 'pending';
  failuresSinceRedrive: 0;
  subscription: string;
  outboxJobId: string | null;
} {
  return {
    state: 'pending',
    failuresSinceRedrive: 0,
    subscription: job.module,
    outboxJobId: job.replayId === null ? null : job.jobId,
  };
}

/** What a replay asks of its module: the module, and the version it pins (null: current). */
export interface ReplayRequest {
  replayId: string;
  module: string;
  moduleVersion: number | null;
}

/**
 * The version a replay's jobs show until they start: the pinned one, else the module's
 * current version, else 0 (the module is gone).
 */
export function replayJobVersion(replay: ReplayRequest, current: number | undefined): number {
  return replay.moduleVersion ?? current ?? 0;
}

/**
 * A replay's job for one event: its id (distinct from the ordinary job's), the ordinary
 * job it replays when that exists (the store checks `ordinaryJobId`), and its outbox row
 * (the module's subscription, naming the job). It starts `pending` with no attempt.
 */
export function replayJobPlan(
  replay: ReplayRequest,
  eventId: string,
): { jobId: string; ordinaryJobId: string; state: 'pending'; subscription: string } {
  return {
    jobId: jobIdFor(replay.module, eventId, replay.replayId),
    ordinaryJobId: jobIdFor(replay.module, eventId),
    state: 'pending',
    subscription: replay.module,
  };
}
