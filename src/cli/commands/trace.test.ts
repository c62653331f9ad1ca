import { describe, expect, it } from 'vitest';
import type { TraceView } from '../../api/client.js';
import type { Job, JobState } from '../../core/types.js';
import { traceSettled } from './trace.js';

function job(state: JobState): Job {
  return {
    jobId: `job-${state}`,
    module: 'split',
    moduleVersion: 1,
    eventId: 'root',
    correlationId: 'root',
    state,
    attempts: 1,
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    finishedAt: null,
    lastError: null,
    outputs: [],
    replayId: null,
    replayOf: null,
    pinnedVersion: null,
    cancelRequestedAt: null,
  };
}

function trace(state: JobState): TraceView {
  return { correlationId: 'root', events: [], jobs: [job(state)], insights: [] };
}

describe('traceSettled', () => {
  it('counts every ended state as settled, cancelled included, and no other', () => {
    const none = new Map<string, string[]>();
    expect(traceSettled(trace('succeeded'), none)).toBe(true);
    expect(traceSettled(trace('dead_lettered'), none)).toBe(true);
    expect(traceSettled(trace('cancelled'), none)).toBe(true);
    for (const state of ['pending', 'running', 'failed'] as const)
      expect(traceSettled(trace(state), none)).toBe(false);
  });
});
