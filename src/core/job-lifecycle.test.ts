import { describe, expect, it } from 'vitest';
import { jobIdFor } from './ids.js';
import {
  LIFECYCLE_MESSAGES,
  decideBegin,
  decideCancel,
  decideCommit,
  decideFailure,
  decideReclaim,
  decideRestart,
  redrivePlan,
  renewOutcome,
  replayJobPlan,
  replayJobVersion,
  type FailureReport,
  type JobSnapshot,
} from './job-lifecycle.js';
import type { Job, JobState } from './types.js';

function snapshot(over: Partial<JobSnapshot> = {}): JobSnapshot {
  return {
    state: 'failed',
    attempts: 2,
    failuresSinceRedrive: 1,
    cancelRequestedAt: null,
    ...over,
  };
}

function job(over: Partial<Job> = {}): Job {
  return {
    jobId: 'job-1',
    module: 'thumbs',
    moduleVersion: 3,
    eventId: 'evt-1',
    correlationId: 'cor-1',
    state: 'running',
    attempts: 2,
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    finishedAt: null,
    lastError: null,
    outputs: [],
    replayId: null,
    replayOf: null,
    pinnedVersion: null,
    cancelRequestedAt: null,
    ...over,
  };
}

function report(over: Partial<FailureReport> = {}): FailureReport {
  return {
    jobId: 'job-1',
    finishedAt: '2026-01-01T00:01:00.000Z',
    error: 'exit 1',
    logTail: 'boom',
    nextState: 'failed',
    countsAsFailure: true,
    ...over,
  };
}

describe('beginning an attempt', () => {
  it('creates a job that does not exist with its first attempt and no failures', () => {
    expect(decideBegin(null)).toEqual({ kind: 'create', attempt: 1, failures: 0 });
  });

  it.each<[JobState, ReturnType<typeof decideBegin>]>([
    ['succeeded', { kind: 'ended', status: 'succeeded' }],
    ['dead_lettered', { kind: 'ended', status: 'dead_lettered' }],
    ['cancelled', { kind: 'ended', status: 'cancelled' }],
    ['pending', { kind: 'check_attempts' }],
    ['running', { kind: 'check_attempts' }],
    ['failed', { kind: 'check_attempts' }],
  ])('a %s job: %j', (state, expected) => {
    expect(decideBegin(snapshot({ state }))).toEqual(expected);
  });

  it('waits for another worker that still holds a live lease', () => {
    expect(decideReclaim({ attempt: 4, leaseUntil: '2026-01-01T00:05:00.000Z' })).toEqual({
      kind: 'busy',
      attempt: 4,
      leaseUntil: '2026-01-01T00:05:00.000Z',
    });
  });

  it('closes lapsed running attempts as worker_lost, a platform failure that counts', () => {
    expect(decideReclaim(null)).toEqual({
      kind: 'close_lost',
      errorCode: 'worker_lost',
      errorKind: 'platform',
      error: LIFECYCLE_MESSAGES.worker_lost,
      countsAsFailure: true,
    });
  });

  it.each<[string, JobSnapshot, number, ReturnType<typeof decideRestart>]>([
    [
      'starts the next attempt, keeping the last error when nothing was lost',
      snapshot({ attempts: 2, failuresSinceRedrive: 1 }),
      0,
      { kind: 'start', state: 'running', attempt: 3, failures: 1, lastError: null },
    ],
    [
      'adds lost attempts to the failures and shows the loss as the last error',
      snapshot({ attempts: 2, failuresSinceRedrive: 1 }),
      1,
      {
        kind: 'start',
        state: 'running',
        attempt: 3,
        failures: 2,
        lastError: LIFECYCLE_MESSAGES.worker_lost,
      },
    ],
    [
      'completes a cancel asked for before the worker died',
      snapshot({ state: 'running', cancelRequestedAt: '2026-01-01T00:00:30.000Z' }),
      1,
      { kind: 'cancel', state: 'cancelled', lastError: LIFECYCLE_MESSAGES.cancelled },
    ],
  ])('%s', (_name, snap, lost, expected) => {
    expect(decideRestart(snap, lost)).toEqual(expected);
  });
});

describe('renewing and cancelling', () => {
  it.each<[boolean, string | null | undefined, string]>([
    [false, null, 'closed'],
    [false, '2026-01-01T00:00:30.000Z', 'closed'],
    [true, null, 'held'],
    [true, undefined, 'held'],
    [true, '2026-01-01T00:00:30.000Z', 'cancel_requested'],
  ])('renew (still running %s, cancel asked %s) is %s', (running, cancel, expected) => {
    expect(renewOutcome(running, cancel)).toBe(expected);
  });

  it.each<[JobState, ReturnType<typeof decideCancel>]>([
    ['succeeded', { kind: 'settled' }],
    ['dead_lettered', { kind: 'settled' }],
    ['cancelled', { kind: 'settled' }],
    ['running', { kind: 'flag' }],
    ['pending', { kind: 'cancel', state: 'cancelled', lastError: LIFECYCLE_MESSAGES.cancelled }],
    ['failed', { kind: 'cancel', state: 'cancelled', lastError: LIFECYCLE_MESSAGES.cancelled }],
  ])('cancelling a %s job: %j', (state, expected) => {
    expect(decideCancel(state)).toEqual(expected);
  });
});

describe('failing an attempt', () => {
  it('ignores a late report of an attempt that was no longer running', () => {
    expect(decideFailure(job(), report(), false)).toEqual({ kind: 'ignore' });
  });

  it('ignores a report on a job that succeeded through another attempt', () => {
    expect(decideFailure(job({ state: 'succeeded' }), report(), true)).toEqual({
      kind: 'ignore',
    });
  });

  it.each<[string, Partial<Job>, Partial<FailureReport>, string, 0 | 1, boolean]>([
    ['a retry follows', {}, { nextState: 'failed' }, 'failed', 1, false],
    [
      'released without blame on shutdown',
      {},
      { nextState: 'pending', countsAsFailure: false },
      'pending',
      0,
      false,
    ],
    ['stopped on request', {}, { nextState: 'cancelled' }, 'cancelled', 1, true],
    ['out of retries', {}, { nextState: 'dead_lettered' }, 'dead_lettered', 1, true],
    [
      'a cancel asked while it ran wins over a retry',
      { cancelRequestedAt: '2026-01-01T00:00:30.000Z' },
      { nextState: 'failed' },
      'cancelled',
      1,
      true,
    ],
    [
      'a cancel asked while it ran wins over a dead letter',
      { cancelRequestedAt: '2026-01-01T00:00:30.000Z' },
      { nextState: 'dead_lettered' },
      'cancelled',
      1,
      true,
    ],
  ])('%s', (_name, jobOver, reportOver, state, failuresAdded, ended) => {
    const step = decideFailure(job(jobOver), report(reportOver), true);
    expect(step).toMatchObject({ kind: 'fail', state, failuresAdded, ended, lastError: 'exit 1' });
    if (step.kind === 'fail' && state !== 'dead_lettered') expect(step.deadLetter).toBeNull();
  });

  it('writes the dead letter of a dead-lettered job, its reason falling back to the error', () => {
    const withReason = decideFailure(
      job(),
      report({ nextState: 'dead_lettered', deadLetterReason: 'retries exhausted' }),
      true,
    );
    expect(withReason).toMatchObject({
      deadLetter: {
        id: 'job-1',
        jobId: 'job-1',
        module: 'thumbs',
        eventId: 'evt-1',
        reason: 'retries exhausted',
        attempts: 2,
        logTail: 'boom',
        createdAt: '2026-01-01T00:01:00.000Z',
      },
    });
    const withoutReason = decideFailure(job(), report({ nextState: 'dead_lettered' }), true);
    expect(withoutReason).toMatchObject({ deadLetter: { reason: 'exit 1' } });
  });
});

describe('committing an attempt', () => {
  it.each<[JobState, boolean, ReturnType<typeof decideCommit>]>([
    ['succeeded', false, { kind: 'already_succeeded' }],
    ['succeeded', true, { kind: 'already_succeeded' }],
    ['running', false, { kind: 'commit', state: 'succeeded', writeInsights: true }],
    ['running', true, { kind: 'commit', state: 'succeeded', writeInsights: false }],
    ['failed', false, { kind: 'commit', state: 'succeeded', writeInsights: true }],
  ])('a %s job (insights stored: %s): %j', (state, hasInsights, expected) => {
    expect(decideCommit(state, hasInsights)).toEqual(expected);
  });
});

describe('redrive and replay', () => {
  it('redrives an ordinary job to its subscription with a fresh budget', () => {
    expect(redrivePlan(job({ replayId: null }))).toEqual({
      state: 'pending',
      failuresSinceRedrive: 0,
      subscription: 'thumbs',
      outboxJobId: null,
    });
  });

  it('redrives a replayed job by naming it in the outbox row', () => {
    expect(redrivePlan(job({ replayId: 'rpl-1' }))).toMatchObject({ outboxJobId: 'job-1' });
  });

  it.each<[number | null, number | undefined, number]>([
    [2, 5, 2],
    [null, 5, 5],
    [null, undefined, 0],
  ])('a replay pinning %s over current %s shows version %s', (pinned, current, expected) => {
    expect(
      replayJobVersion({ replayId: 'r', module: 'thumbs', moduleVersion: pinned }, current),
    ).toBe(expected);
  });

  it('gives a replayed job its own id and points at the ordinary one', () => {
    const plan = replayJobPlan({ replayId: 'rpl-1', module: 'thumbs', moduleVersion: null }, 'e1');
    expect(plan).toEqual({
      jobId: jobIdFor('thumbs', 'e1', 'rpl-1'),
      ordinaryJobId: jobIdFor('thumbs', 'e1'),
      state: 'pending',
      subscription: 'thumbs',
    });
    expect(plan.jobId).not.toBe(plan.ordinaryJobId);
  });
});
