import type { Delivery } from '../bus/event-bus.js';
import { parseNotice } from '../bus/message-format.js';
import { errorMessage } from '../core/errors.js';
import { jobIdFor, newId } from '../core/ids.js';
import { nowIso } from '../core/time.js';
import type { IonEvent, Job, ModuleRecord } from '../core/types.js';
import { hostFailure, type JobHostResult } from '../executors/job-host.js';
import { isHostFailure } from '../executors/job-hosts.js';
import type { FailAttemptInput } from '../store/document-store.js';
import { Tracing } from '../telemetry/tracing.js';
import {
  attemptEnd,
  failureOutcome,
  WORKERS_LOST,
  type AttemptEnd,
  type AttemptFailure,
} from './attempt-end.js';
import {
  attemptLogFile,
  keepAttemptLog,
  leaseFromNow,
  watchAttempt,
  type AttemptWatchHandle,
} from './attempt-progress.js';
import { retryDelayMs } from './backoff.js';
import type { DispatcherDeps } from './deps.js';
import { AttemptSpans } from './job-spans.js';

/** Where the module of a job comes from: a replay may pin an older version of it. */
async function moduleForJob(
  deps: DispatcherDeps,
  current: ModuleRecord,
  job: Job,
): Promise<ModuleRecord | string> {
  if (job.pinnedVersion === null || job.pinnedVersion === current.version) return current;
  const versions = await deps.store.listModuleVersions(current.name);
  const pinned = versions.find((v) => v.version === job.pinnedVersion);
  if (pinned === undefined)
    return `version ${job.pinnedVersion} of module ${current.name} is not stored`;
  return { ...current, ...pinned.spec, version: pinned.version };
}

/** One started attempt, as the steps after `beginAttempt` share it. */
interface Attempt {
  delivery: Delivery;
  module: ModuleRecord;
  event: IonEvent;
  jobId: string;
  attempt: number;
  replayId: string | null;
  /** When the delivery was received (ms since the epoch). */
  receivedAt: number;
  spans: AttemptSpans;
  log: DispatcherDeps['logger'];
}

/**
 * Runs one delivery of one module through the commit protocol: dedupe, prepare, execute,
 * commit (or fail / retry / dead-letter), then settle the delivery. Never throws: every
 * failure ends as a settled delivery and a recorded attempt, or a nack when even recording
 * failed (the bus redelivers later).
 *
 * How an attempt's end is decided lives in attempt-end.ts, the leases and progress reports
 * while it runs in attempt-progress.ts, and its spans in job-spans.ts.
 */
export class JobRunner {
  private readonly tracing: Tracing;

  constructor(private readonly deps: DispatcherDeps) {
    this.tracing = deps.tracing ?? Tracing.off;
  }

  async handle(delivery: Delivery, module: ModuleRecord, cancel: AbortSignal): Promise<void> {
    const log = this.deps.logger.child({ module: module.name, messageId: delivery.message.id });
    try {
      await this.handleInner(delivery, module, cancel, log);
    } catch (err) {
      // The store or the bus failed under us: leave the job to a later redelivery.
      log.error(
        { err: errorMessage(err) },
        'job handling failed; releasing the delivery for a later retry',
      );
      await delivery
        .nack({
          delayMs: retryDelayMs(
            delivery.deliveryCount,
            this.deps.settings.retryBaseDelayMs,
            this.deps.settings.retryMaxDelayMs,
          ),
        })
        .catch((e: unknown) =>
          log.warn({ err: errorMessage(e) }, 'nack failed; the lease will lapse instead'),
        );
    }
  }

  /** A delivery that names no runnable job (malformed, or its event is missing): parked with a reason. */
  private async deadLetterWithoutJob(
    delivery: Delivery,
    module: ModuleRecord,
    eventId: string | null,
    reason: string,
  ): Promise<void> {
    await this.deps.store.addDeadLetter({
      id: newId(),
      jobId: '',
      module: module.name,
      eventId,
      reason,
      attempts: 0,
      logTail: '',
      createdAt: nowIso(),
    });
    await delivery.deadLetter(reason);
  }

  private async handleInner(
    delivery: Delivery,
    module: ModuleRecord,
    cancel: AbortSignal,
    log: DispatcherDeps['logger'],
  ): Promise<void> {
    const receivedAt = Date.now();
    const { store, settings } = this.deps;
    const notice = parseNotice(delivery.message);
    if (typeof notice === 'string') {
      const reason = `message_malformed: bus message ${delivery.message.id}: ${notice}`;
      log.warn({ reason }, 'dead-lettering a malformed bus message');
      await this.deadLetterWithoutJob(delivery, module, null, reason);
      return;
    }
    const event = await store.getEvent(notice.eventId);
    if (event === null) {
      const reason = `event ${notice.eventId} named by the bus message is not in the store`;
      await this.deadLetterWithoutJob(delivery, module, notice.eventId, reason);
      return;
    }
    let jobId = jobIdFor(module.name, event.eventId);
    let replayId: string | null = null;
    if (notice.jobId !== undefined) {
      // A replayed job: created beforehand with its own id, maybe pinned to a version.
      const job = await store.getJob(notice.jobId);
      if (job === null || job.module !== module.name || job.eventId !== event.eventId) {
        const reason = `message_malformed: bus message ${delivery.message.id}: job ${notice.jobId} of module ${module.name} on event ${event.eventId} is not in the store`;
        await this.deadLetterWithoutJob(delivery, module, event.eventId, reason);
        return;
      }
      const chosen = await moduleForJob(this.deps, module, job);
      if (typeof chosen === 'string') {
        await this.deadLetterWithoutJob(delivery, module, event.eventId, chosen);
        return;
      }
      module = chosen;
      jobId = job.jobId;
      replayId = job.replayId;
    }
    const begin = await store.beginAttempt({
      jobId,
      module: module.name,
      moduleVersion: module.version,
      event,
      workerId: this.deps.workerId,
      startedAt: nowIso(),
      leaseUntil: leaseFromNow(settings.leaseMs),
    });
    if (begin.status === 'busy') {
      // A duplicate delivery while another worker runs the job: look again once its lease
      // would have lapsed. If it succeeds meanwhile, the redelivery is acked as settled.
      const delayMs = Math.max(settings.leaseMs, Date.parse(begin.leaseUntil) - Date.now()) + 100;
      log.debug(
        { jobId, attempt: begin.attempt, delayMs },
        'job running elsewhere; delivery postponed',
      );
      await delivery.nack({ delayMs });
      return;
    }
    if (begin.status !== 'started') {
      log.debug(
        { jobId, status: begin.status },
        'job already settled; acking the duplicate delivery',
      );
      await delivery.ack();
      return;
    }
    const started: Attempt = {
      delivery,
      module,
      event,
      jobId,
      attempt: begin.attempt,
      replayId,
      receivedAt,
      spans: new AttemptSpans(
        this.tracing,
        notice,
        event,
        module,
        jobId,
        begin.attempt,
        replayId,
        receivedAt,
      ),
      log,
    };
    await started.spans.within(() => this.runStarted(started, begin.failures, cancel));
  }

  /** From a started attempt to its recorded end. */
  private async runStarted(a: Attempt, failuresBefore: number, cancel: AbortSignal): Promise<void> {
    const { store, settings } = this.deps;
    const { delivery, module, jobId, attempt, log } = a;
    if (failuresBefore > module.retries) {
      // Earlier attempts were lost with their workers until the budget ran out.
      await this.settleFailure(a, failuresBefore, WORKERS_LOST);
      return;
    }
    const stop = new AbortController();
    const logFile = attemptLogFile(this.deps.dataDir, jobId, attempt);
    const watching = watchAttempt({
      store,
      delivery,
      jobId,
      attempt,
      leaseMs: settings.leaseMs,
      heldSince: a.receivedAt,
      logFile,
      log,
      stop,
    });
    try {
      await this.runAndRecord(a, failuresBefore, logFile, cancel, stop.signal, watching);
    } finally {
      watching.end();
    }
  }

  /** Runs a watched attempt, then records its end while the watch still keeps its leases. */
  private async runAndRecord(
    a: Attempt,
    failuresBefore: number,
    logFile: string,
    cancel: AbortSignal,
    stop: AbortSignal,
    watching: AttemptWatchHandle,
  ): Promise<void> {
    const { store } = this.deps;
    const { delivery, module, jobId, attempt, spans, log } = a;
    let end: AttemptEnd;
    try {
      end = await this.runAttempt(a, logFile, cancel, stop);
    } finally {
      watching.ran();
    }
    spans.endRun(end);
    if (!end.ok) {
      await this.settleFailure(a, failuresBefore + (end.released ? 0 : 1), end);
      return;
    }
    const duration = end.result.durationMs;
    const committed = end;
    await spans.commit(async () => {
      await store.commitAttempt({
        jobId,
        attempt,
        finishedAt: nowIso(),
        durationMs: duration,
        exitCode: 0,
        logTail: committed.result.logTail,
        logBlob: committed.logBlob,
        insights: committed.insights,
        outputs: committed.outputs,
        children: committed.children,
      });
      await delivery.ack();
    }, committed.children);
    spans.finish('succeeded', end);
    this.deps.onCommitted?.();
    this.deps.onAttemptFinished?.({
      module: module.name,
      outcome: 'succeeded',
      durationMs: duration,
    });
    log.info(
      { jobId, attempt, durationMs: duration, children: end.children.length },
      'job succeeded',
    );
  }

  private async settleFailure(a: Attempt, failures: number, end: AttemptFailure): Promise<void> {
    const { module, jobId, attempt, spans } = a;
    const base = {
      jobId,
      attempt,
      finishedAt: nowIso(),
      durationMs: end.result?.durationMs ?? null,
      exitCode: end.result?.exitCode ?? null,
      errorCode: end.code,
      errorKind: end.kind,
      error: end.message,
      logTail: end.result?.logTail ?? '',
      logBlob: end.logBlob,
    };
    const outcome = failureOutcome(end, failures, module.retries);
    this.deps.onAttemptFinished?.({ module: module.name, outcome, durationMs: base.durationMs });
    try {
      await spans.commit(() => this.recordFailure(a, failures, end, base, outcome));
    } finally {
      spans.finish(outcome, end);
    }
  }

  private async recordFailure(
    a: Attempt,
    failures: number,
    end: AttemptFailure,
    base: Omit<FailAttemptInput, 'nextState' | 'countsAsFailure' | 'deadLetterReason'>,
    outcome: ReturnType<typeof failureOutcome>,
  ): Promise<void> {
    const { store, settings } = this.deps;
    const { delivery, jobId, attempt, log } = a;
    if (outcome === 'cancelled') {
      await store.failAttempt({ ...base, nextState: 'cancelled', countsAsFailure: false });
      await delivery.ack();
      log.info({ jobId, attempt }, 'job cancelled on request');
      return;
    }
    if (outcome === 'released') {
      await store.failAttempt({ ...base, nextState: 'pending', countsAsFailure: false });
      await delivery.nack({ delayMs: 0 });
      log.info({ jobId, attempt }, 'job released for redelivery (shutdown)');
      return;
    }
    if (outcome === 'dead_lettered') {
      const reason = `${end.code}: ${end.message} (after ${failures} failed attempt${failures === 1 ? '' : 's'})`;
      await store.failAttempt({
        ...base,
        nextState: 'dead_lettered',
        countsAsFailure: true,
        deadLetterReason: reason,
      });
      await delivery.deadLetter(reason);
      log.warn({ jobId, attempt, reason }, 'job dead-lettered');
      return;
    }
    const delayMs = Math.max(
      retryDelayMs(failures, settings.retryBaseDelayMs, settings.retryMaxDelayMs),
      end.result?.failure?.retryAfterMs ?? 0,
    );
    await store.failAttempt({ ...base, nextState: 'failed', countsAsFailure: true });
    await delivery.nack({ delayMs });
    log.info(
      { jobId, attempt, code: end.code, error: end.message, retryInMs: delayMs },
      'attempt failed; retry scheduled',
    );
  }

  /** Runs the attempt on its module's job host and decides how it ended. */
  private async runAttempt(
    a: Attempt,
    logFile: string,
    shutdown: AbortSignal,
    cancelRequest: AbortSignal,
  ): Promise<AttemptEnd> {
    const { module, event, jobId, attempt, replayId, spans } = a;
    const host = await this.deps.jobHosts.hostFor(module);
    // Warm modules too: the warm protocol sends the trace context with each job.
    const traceEnv = spans.startRun();
    if (isHostFailure(host))
      return { ok: false, released: false, ...host, result: null, logBlob: null };
    let ran: JobHostResult;
    try {
      ran = await host.run({
        jobId,
        attempt,
        module,
        event,
        baseEnv:
          traceEnv.TRACEPARENT === undefined
            ? this.deps.baseEnv
            : { ...this.deps.baseEnv, ...traceEnv },
        logFile,
        signal: AbortSignal.any([shutdown, cancelRequest]),
      });
    } catch (err) {
      ran = { execution: null, collected: null, failure: hostFailure(err) };
    }
    const logBlob = await keepAttemptLog(this.deps.blobs, this.deps.logger, logFile);
    return attemptEnd({
      ran,
      module,
      event,
      jobId,
      replayId,
      logBlob,
      cancelRequested: cancelRequest.aborted,
    });
  }
}
