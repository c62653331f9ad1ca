import { open, rm, rmdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Delivery } from '../bus/event-bus.js';
import { errorMessage } from '../core/errors.js';
import { childEventId, jobIdFor } from '../core/ids.js';
import { nowIso } from '../core/time.js';
import type { FailureKind, FileRef, IonEvent, Job, KeyValue, ModuleRecord } from '../core/types.js';
import type { CollectedOutputs } from '../handler/collect.js';
import { hostFailure } from '../executors/job-host.js';
import { isHostFailure } from '../executors/job-hosts.js';
import type { LogProgress, RenewResult } from '../store/document-store.js';
import { retryDelayMs } from './backoff.js';
import { parseNotice } from '../bus/message-format.js';
import type { DispatcherDeps } from './deps.js';
import { newId } from '../core/ids.js';
import type { ExecutionResult } from '../executors/executor.js';

function leaseFromNow(leaseMs: number): string {
  return new Date(Date.now() + leaseMs).toISOString();
}

/** How often a running job's leases are pushed out: a third of the lease, so two may fail. */
function leaseEveryMsFor(leaseMs: number): number {
  return Math.max(50, Math.floor(leaseMs / 3));
}

/** How much of a running attempt's log is kept live in the store, for `logs --follow`. */
const LIVE_TAIL_BYTES = 64 * 1024;
/** How often a running job reports its log progress and looks for a cancel request. */
const PROGRESS_INTERVAL_MS = 1000;

/** Where a running attempt's log is written, until it is kept in the blob store. */
function attemptLogFile(dataDir: string, jobId: string, attempt: number): string {
  return join(dataDir, 'logs', jobId, `${attempt}.log`);
}

/** The size of a running attempt's log file and its last bytes; null when there is none yet. */
async function readLogProgress(logFile: string): Promise<LogProgress | null> {
  const handle = await open(logFile, 'r').catch(() => null);
  if (handle === null) return null;
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, LIVE_TAIL_BYTES);
    const buf = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buf, 0, length, size - length);
    // Start on a character boundary, so the stored text re-encodes to exactly the bytes it
    // stands for and a follower can count bytes (UTF-8 output; other bytes come out replaced).
    let start = 0;
    while (start < Math.min(3, bytesRead) && length < size && (buf[start]! & 0xc0) === 0x80)
      start += 1;
    return { logSize: size, logTail: buf.subarray(start, bytesRead).toString('utf8') };
  } finally {
    await handle.close();
  }
}

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

/** How one attempt ended, before it is recorded. */
type AttemptEnd =
  | {
      ok: true;
      result: ExecutionResult;
      logBlob: string | null;
      children: IonEvent[];
      insights: KeyValue[];
      outputs: FileRef[];
    }
  | {
      ok: false;
      released: boolean;
      /** Stopped on a cancel request: the job ends `cancelled`, no retry. */
      cancelled?: boolean;
      code: string;
      kind: FailureKind;
      message: string;
      result: ExecutionResult | null;
      logBlob: string | null;
    };

/**
 * Runs one delivery of one module through the commit protocol: dedupe, prepare, execute,
 * commit (or fail / retry / dead-letter), then settle the delivery. Never throws: every
 * failure ends as a settled delivery and a recorded attempt, or a nack when even recording
 * failed (the bus redelivers later).
 */
export class JobRunner {
  constructor(private readonly deps: DispatcherDeps) {}

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
    const { attempt } = begin;
    if (begin.failures > module.retries) {
      // Earlier attempts were lost with their workers until the budget ran out.
      await this.settleFailure(
        delivery,
        module,
        jobId,
        attempt,
        begin.failures,
        {
          ok: false,
          released: false,
          code: 'worker_lost',
          kind: 'platform',
          message: 'the workers running this job stopped before it finished',
          result: null,
          logBlob: null,
        },
        log,
      );
      return;
    }
    // While the job runs, keep both leases alive (the bus delivery's and the attempt's),
    // report how far its log has got, and watch for a cancel request.
    const stop = new AbortController();
    const logFile = attemptLogFile(this.deps.dataDir, jobId, attempt);
    const lease = setInterval(() => {
      delivery
        .extend()
        .catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'lease extension failed'));
    }, leaseEveryMsFor(settings.leaseMs));
    let lastSize = -1;
    let renewedAt = Date.now();
    let renewing = false;
    const leaseEveryMs = leaseEveryMsFor(settings.leaseMs);
    const renew = async (): Promise<void> => {
      const progress = await readLogProgress(logFile).catch(() => null);
      const changed = progress !== null && progress.logSize !== lastSize;
      let found: RenewResult;
      if (changed || Date.now() - renewedAt >= leaseEveryMs) {
        // A write only when there is news or the lease is due; otherwise a read of the flag.
        found = await store.renewAttempt(
          jobId,
          attempt,
          leaseFromNow(settings.leaseMs),
          changed ? progress : undefined,
        );
        renewedAt = Date.now();
        if (changed) lastSize = progress.logSize;
      } else {
        const job = await store.getJob(jobId);
        found = job?.cancelRequestedAt == null ? 'held' : 'cancel_requested';
      }
      if (found === 'closed')
        log.warn({ jobId, attempt }, 'attempt was closed elsewhere while it ran');
      if (found === 'cancel_requested' && !stop.signal.aborted) {
        log.info({ jobId, attempt }, 'cancel requested; stopping the module');
        stop.abort();
      }
    };
    const progress = setInterval(
      () => {
        if (renewing) return;
        renewing = true;
        renew()
          .catch((err: unknown) =>
            log.warn({ err: errorMessage(err) }, 'attempt lease renewal failed'),
          )
          .finally(() => {
            renewing = false;
          });
      },
      Math.min(PROGRESS_INTERVAL_MS, leaseEveryMsFor(settings.leaseMs)),
    );
    let end: AttemptEnd;
    try {
      end = await this.runAttempt(module, event, jobId, attempt, cancel, stop.signal, replayId);
    } finally {
      clearInterval(lease);
      clearInterval(progress);
    }
    if (end.ok) {
      const duration = end.result.durationMs;
      await store.commitAttempt({
        jobId,
        attempt,
        finishedAt: nowIso(),
        durationMs: duration,
        exitCode: 0,
        logTail: end.result.logTail,
        logBlob: end.logBlob,
        insights: end.insights,
        outputs: end.outputs,
        children: end.children,
      });
      await delivery.ack();
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
      return;
    }
    await this.settleFailure(
      delivery,
      module,
      jobId,
      attempt,
      begin.failures + (end.released ? 0 : 1),
      end,
      log,
    );
  }

  private async settleFailure(
    delivery: Delivery,
    module: ModuleRecord,
    jobId: string,
    attempt: number,
    failures: number,
    end: Extract<AttemptEnd, { ok: false }>,
    log: DispatcherDeps['logger'],
  ): Promise<void> {
    const { store, settings } = this.deps;
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
    this.deps.onAttemptFinished?.({
      module: module.name,
      outcome: end.cancelled
        ? 'cancelled'
        : end.released
          ? 'released'
          : failures > module.retries
            ? 'dead_lettered'
            : 'failed',
      durationMs: base.durationMs,
    });
    if (end.cancelled === true) {
      await store.failAttempt({ ...base, nextState: 'cancelled', countsAsFailure: false });
      await delivery.ack();
      log.info({ jobId, attempt }, 'job cancelled on request');
      return;
    }
    if (end.released) {
      await store.failAttempt({ ...base, nextState: 'pending', countsAsFailure: false });
      await delivery.nack({ delayMs: 0 });
      log.info({ jobId, attempt }, 'job released for redelivery (shutdown)');
      return;
    }
    if (failures > module.retries) {
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
    module: ModuleRecord,
    event: IonEvent,
    jobId: string,
    attempt: number,
    shutdown: AbortSignal,
    cancelRequest: AbortSignal,
    replayId: string | null,
  ): Promise<AttemptEnd> {
    const { dataDir } = this.deps;
    const logFile = attemptLogFile(dataDir, jobId, attempt);
    const host = await this.deps.jobHosts.hostFor(module);
    if (isHostFailure(host))
      return { ok: false, released: false, ...host, result: null, logBlob: null };
    let ran;
    try {
      ran = await host.run({
        jobId,
        attempt,
        module,
        event,
        baseEnv: this.deps.baseEnv,
        logFile,
        signal: AbortSignal.any([shutdown, cancelRequest]),
      });
    } catch (err) {
      ran = { execution: null, collected: null, failure: hostFailure(err) };
    }
    const logBlob = await this.keepLog(logFile);
    const result = ran.execution;
    const fail = (
      code: string,
      kind: FailureKind,
      message: string,
    ): Extract<AttemptEnd, { ok: false }> => ({
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
    if (result.cancelled && cancelRequest.aborted) {
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
      return fail(
        'module_timeout',
        'module',
        `timed out after ${module.timeoutMs}ms and was killed`,
      );
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
    if (ran.collected === null)
      return fail('internal', 'platform', 'the job host collected nothing');
    return {
      ok: true,
      result,
      logBlob,
      ...this.childrenOf(ran.collected, module, event, jobId, replayId),
    };
  }

  /** The collected outputs as what the commit stores: child events get their derived ids. */
  private childrenOf(
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

  /** Moves the attempt's log into the blob store so any server can serve it later. */
  private async keepLog(logFile: string): Promise<string | null> {
    try {
      const info = await stat(logFile).catch(() => null);
      // An empty log is fully described by the (empty) tail stored with the attempt.
      const ref = info === null || info.size === 0 ? null : await this.deps.blobs.putFile(logFile);
      await rm(logFile, { force: true });
      await rmdir(dirname(logFile)).catch(() => undefined); // only when no other log is left
      return ref?.sha256 ?? null;
    } catch (err) {
      this.deps.logger.warn({ err: errorMessage(err), logFile }, 'could not keep the attempt log');
      return null;
    }
  }
}
