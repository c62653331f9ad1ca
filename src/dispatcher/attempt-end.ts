import { childEventId } from '../core/ids.js';
import { nowIso } from '../core/time.js';
import type { FailureKind, FileRef, IonEvent, KeyValue, ModuleRecord } from '../core/types.js';
import type { ExecutionResult } from '../executors/executor.js';
import type { JobHostResult } from '../executors/job-host.js';
import type { CollectedOutputs } from '../handler/collect.js';
import type { AttemptFinished } from './deps.js';

/** How one attempt ended, before it is recorded. */
export type AttemptEnd =
  | {
      ok: true;
      result: ExecutionResult;
      logBlob: string | null;
      children: IonEvent[];
      insights: KeyValue[];
      outputs: FileRef[];
    }
  | AttemptFailure;

export interface AttemptFailure {
  ok: false;
  released: boolean;
  /** Stopped on a cancel request: the job ends `cancelled`, no retry. */
  cancelled?: boolean;
  code: string;
  kind: FailureKind;
  message: string;
  result: ExecutionResult | null;
  logBlob: string | null;
}

/** Where a job's fate is decided: everything the host said about one attempt. */
export interface AttemptFacts {
  ran: JobHostResult;
  module: ModuleRecord;
  event: IonEvent;
  jobId: string;
  replayId: string | null;
  logBlob: string | null;
  /** A cancel request was seen while it ran. */
  cancelRequested: boolean;
}

/**
 * Decides how an attempt ended, in the order the job host port documents: the host's own
 * failure, a cancel or a shutdown, a timeout, the execution's failure, the exit code, and
 * finally success with the collected outputs.
 */
export function attemptEnd(facts: AttemptFacts): AttemptEnd {
  const { ran, module, cancelRequested, logBlob } = facts;
  const result = ran.execution;
  const fail = (code: string, kind: FailureKind, message: string): AttemptFailure => ({
    ok: false,
    released: false,
    code,
    kind,
    message,
    result,
    logBlob,
  });
  if (ran.failure !== null) return fail(ran.failure.code, ran.failure.kind, ran.failure.message);
  if (result === null) return fail('internal', 'platform', 'the job host reported no run');
  if (result.cancelled && cancelRequested) {
    return {
      ...fail('job_cancelled', 'platform', 'cancelled on request; the module was stopped'),
      cancelled: true,
    };
  }
  if (result.cancelled) {
    return {
      ...fail(
        'worker_lost',
        'platform',
        'the worker shut down while the job ran; released for redelivery',
      ),
      released: true,
    };
  }
  if (result.timedOut)
    return fail('module_timeout', 'module', `timed out after ${module.timeoutMs}ms and was killed`);
  if (result.failure !== undefined) {
    const kind =
      result.failure.code === 'image_unavailable' || result.failure.code === 'pod_unschedulable'
        ? 'platform'
        : 'module';
    return fail(result.failure.code, kind, result.failure.message);
  }
  if (result.exitCode !== 0) {
    const how =
      result.exitCode === null
        ? `was killed by ${result.signal ?? 'a signal'}`
        : `exited with code ${result.exitCode}`;
    return fail('module_failed', 'module', `the module ${how}`);
  }
  if (ran.collected === null) return fail('internal', 'platform', 'the job host collected nothing');
  return {
    ok: true,
    result,
    logBlob,
    ...childrenOf(ran.collected, module, facts.event, facts.jobId, facts.replayId),
  };
}

/** The collected outputs as what the commit stores: child events get their derived ids. */
function childrenOf(
  collected: CollectedOutputs,
  module: ModuleRecord,
  event: IonEvent,
  jobId: string,
  replayId: string | null,
): { children: IonEvent[]; insights: KeyValue[]; outputs: FileRef[] } {
  const createdAt = nowIso();
  const children: IonEvent[] = collected.events.map((raised) => ({
    eventId: childEventId(event.eventId, module.name, raised.fileName, replayId),
    type: raised.type,
    correlationId: event.correlationId,
    parentEventId: event.eventId,
    source: module.name,
    sourceJobId: jobId,
    data: raised.data,
    files: raised.files,
    createdAt,
  }));
  return { children, insights: collected.insights, outputs: collected.outputs };
}

/** What a failed attempt leads to, given the failures counted so far (this one included). */
export function failureOutcome(
  end: AttemptFailure,
  failures: number,
  retries: number,
): AttemptFinished['outcome'] {
  if (end.cancelled === true) return 'cancelled';
  if (end.released) return 'released';
  return failures > retries ? 'dead_lettered' : 'failed';
}

/** A platform failure decided before the module ran: earlier workers were lost until the budget ran out. */
export const WORKERS_LOST: AttemptFailure = {
  ok: false,
  released: false,
  code: 'worker_lost',
  kind: 'platform',
  message: 'the workers running this job stopped before it finished',
  result: null,
  logBlob: null,
};
