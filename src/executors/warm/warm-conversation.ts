import type { ExecutionFailure, ExecutionSpec } from '../executor.js';
import type { JobLog } from './job-log.js';
import type { WarmEvent, WarmSlot } from './warm-slot.js';

/**
 * One job's conversation with a warm slot over the protocol (./protocol.ts): the slot's
 * `ready` when it is fresh, the job message, the slot's answer, and the wait for the end
 * marks on its output. The executor (./warm-executor.ts) decides what the answer means for
 * the attempt and for the slot.
 */

/** How a slot answered a job. */
export type Answer =
  | { kind: 'done'; ok: boolean; exitCode: number; error?: string }
  | { kind: 'violation'; reason: string }
  | { kind: 'spawn-error'; exitCode: number; message: string }
  | { kind: 'crashed'; exitCode: number | null; signal: string | null; failure: ExecutionFailure };

/** Start-up (for a fresh process) and one job, up to the process's answer. */
export async function converse(
  proc: WarmSlot,
  spec: ExecutionSpec,
  dir: string,
  jobEnv: Record<string, string>,
  mark: string,
  stopped: Promise<'stopped'>,
  log: JobLog,
  program: string,
): Promise<'stopped' | Answer> {
  if (!proc.ready) {
    const event = await Promise.race([proc.next(), stopped]);
    if (event === 'stopped') return event;
    if (!(event.kind === 'message' && event.message.type === 'ready'))
      return unexpected(
        event,
        program,
        'before it said ready (a warm module must run an Ion warm SDK loop or speak the protocol on fd 3: docs/modules.md, "Warm modules")',
        proc.noun,
      );
    proc.ready = true;
    log.note(`[ion] ${proc.noun} ${proc.id} of ${proc.module} v${proc.version} is ready`);
  }
  proc.jobs += 1;
  clearTimeout(proc.idleTimer);
  proc.send({
    type: 'job',
    id: spec.jobId,
    attempt: spec.attempt,
    dir,
    env: jobEnv,
    mark,
  });
  const event = await Promise.race([proc.next(), stopped]);
  if (event === 'stopped') return event;
  if (event.kind === 'message' && event.message.type === 'done') {
    if (event.message.id !== spec.jobId)
      return {
        kind: 'violation',
        reason: `done names job ${event.message.id}, not ${spec.jobId}`,
      };
    const { ok, exitCode, error } = event.message;
    return {
      kind: 'done',
      ok,
      exitCode: exitCode ?? 0,
      ...(error === undefined ? {} : { error }),
    };
  }
  return unexpected(event, program, 'in the middle of the job', proc.noun);
}

function unexpected(event: WarmEvent, program: string, when: string, noun: string): Answer {
  switch (event.kind) {
    case 'message':
      return { kind: 'violation', reason: `unexpected "${event.message.type}" message ${when}` };
    case 'violation':
      return event;
    case 'error': {
      const code = (event.err as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
      return {
        kind: 'spawn-error',
        exitCode: code === 'ENOENT' ? 127 : 126,
        message:
          code === 'ENOENT'
            ? `[ion] command not found: ${program}`
            : `[ion] command cannot be executed: ${program} (${code})`,
      };
    }
    case 'exit': {
      const how =
        event.code === null
          ? `was killed by ${event.signal ?? 'a signal'}`
          : `exited with code ${event.code}`;
      return {
        kind: 'crashed',
        exitCode: event.code,
        signal: event.signal,
        failure: event.failure ?? {
          code: 'module_crashed',
          message: `the ${noun} ${how} ${when}`,
        },
      };
    }
  }
}

/** After `done`: both streams' end marks, up to `markWaitMs` (the pipes may lag the socket). */
export async function waitMarks(
  proc: WarmSlot,
  stopped: Promise<'stopped'>,
  markWaitMs: number,
): Promise<boolean> {
  const deadline = performance.now() + markWaitMs;
  while (!proc.outputMarked && proc.alive && performance.now() < deadline) {
    const tick = new Promise((resolve) => setImmediate(resolve));
    if ((await Promise.race([tick, stopped])) === 'stopped') return false;
    if (!proc.outputMarked) await new Promise((resolve) => setTimeout(resolve, 1));
  }
  return proc.outputMarked;
}
