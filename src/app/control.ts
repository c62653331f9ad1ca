import type { Readable } from 'node:stream';
import type {
  Attempt,
  BlobRef,
  DeadLetter,
  IonEvent,
  Job,
  ModuleRecord,
  Replay,
  ReplayStatus,
  Trace,
} from '../core/types.js';
import type { AttemptFinished } from '../dispatcher/deps.js';
import type {
  CancelResult,
  EventFilter,
  JobFilter,
  ModuleVersion,
  UpsertModuleResult,
} from '../store/document-store.js';
import { Blobs } from './blobs.js';
import { ControlObservers, type ControlDeps, type ControlObserver } from './control-deps.js';
import { DeadLetters, type DeadLetterSelector } from './dead-letters.js';
import type { InsightHit, InsightQuery, Lineage } from './event-queries.js';
import { Events, type PublishInput } from './events.js';
import { Jobs } from './jobs.js';
import { Modules, type ApplyResult } from './modules.js';
import { readiness, type Readiness } from './readiness.js';
import { Replays, type ReplayOutcome, type ReplayRequest } from './replays.js';

export type { ControlDeps, ControlObserver } from './control-deps.js';
export type { DeadLetterSelector } from './dead-letters.js';
export type { PublishInput } from './events.js';
export type { ApplyResult } from './modules.js';
export type { BackendCheck, Readiness } from './readiness.js';
export type { ReplayOutcome, ReplayRequest } from './replays.js';

/**
 * The operations behind the management API, free of HTTP, one object per resource
 * (`events`, `jobs`, `modules`, `replays`, `deadLetters`, `blobs`). Routes validate the shape
 * of a request and call a resource; the resource checks what needs the stores (blob existence,
 * module names) and keeps the invariants (a subscription exists before a module's first event
 * can arrive).
 *
 * The flat methods below are one-line delegations kept for the callers that hold a `Control`
 * (the composition root, benchmarks and tests): they add no behaviour of their own.
 */
export class Control {
  private readonly observers = new ControlObservers();
  readonly events: Events;
  readonly jobs: Jobs;
  readonly modules: Modules;
  readonly replays: Replays;
  readonly deadLetters: DeadLetters;
  readonly blobs: Blobs;

  constructor(private readonly deps: ControlDeps) {
    this.events = new Events(deps, this.observers);
    this.jobs = new Jobs(deps);
    this.modules = new Modules(deps);
    this.replays = new Replays(deps);
    this.deadLetters = new DeadLetters(deps);
    this.blobs = new Blobs(deps.blobs);
  }

  /** Adds an observer; returns the function that removes it again. */
  observe(observer: ControlObserver): () => void {
    return this.observers.add(observer);
  }

  /** Passes a dispatcher's attempt outcome on to the observers (wired by the composition root). */
  noteAttemptFinished(info: AttemptFinished): void {
    this.observers.notify((o) => o.attemptFinished?.(info));
  }

  /** Asks every backend a cheap, read-only question (see {@link readiness}). */
  readiness(timeoutMs = 2000): Promise<Readiness> {
    return readiness(this.deps, timeoutMs);
  }

  // -- events -----------------------------------------------------------------------------------
  publish(input: PublishInput): Promise<{ event: IonEvent; created: boolean }> {
    return this.events.publish(input);
  }
  getEvent(eventId: string): Promise<IonEvent> {
    return this.events.get(eventId);
  }
  listEvents(filter: EventFilter): Promise<{ events: IonEvent[]; nextCursor: string | null }> {
    return this.events.list(filter);
  }
  lineage(eventId: string): Promise<Lineage> {
    return this.events.lineage(eventId);
  }
  trace(correlationId: string): Promise<Trace> {
    return this.events.trace(correlationId);
  }
  queryInsights(filter: InsightQuery): Promise<InsightHit[]> {
    return this.events.insights(filter);
  }

  // -- jobs -------------------------------------------------------------------------------------
  listJobs(filter: JobFilter): Promise<Job[]> {
    return this.jobs.list(filter);
  }
  getJob(jobId: string): Promise<{ job: Job; attempts: Attempt[] }> {
    return this.jobs.get(jobId);
  }
  jobLog(
    jobId: string,
    attemptNo?: number,
  ): Promise<{ attempt: Attempt; stream: Readable | null }> {
    return this.jobs.log(jobId, attemptNo);
  }
  followJobLog(
    jobId: string,
    attempt: number | undefined,
    signal: AbortSignal,
  ): Promise<{ attempt: number | null; stream: Readable }> {
    return this.jobs.followLog(jobId, attempt, signal);
  }
  cancelJob(jobId: string): Promise<Exclude<CancelResult, { status: 'settled' }>> {
    return this.jobs.cancel(jobId);
  }

  // -- modules ----------------------------------------------------------------------------------
  applyPipeline(doc: unknown, options: { prune?: boolean } = {}): Promise<ApplyResult> {
    return this.modules.apply(doc, options);
  }
  putModule(name: string, doc: unknown): Promise<UpsertModuleResult> {
    return this.modules.put(name, doc);
  }
  listModules(): Promise<ModuleRecord[]> {
    return this.modules.list();
  }
  getModule(name: string): Promise<ModuleRecord> {
    return this.modules.get(name);
  }
  deleteModule(name: string): Promise<void> {
    return this.modules.delete(name);
  }
  setModulePaused(name: string, paused: boolean): Promise<ModuleRecord> {
    return this.modules.setPaused(name, paused);
  }
  listModuleVersions(name: string): Promise<ModuleVersion[]> {
    return this.modules.versions(name);
  }

  // -- replays ----------------------------------------------------------------------------------
  replay(request: ReplayRequest): Promise<ReplayOutcome> {
    return this.replays.start(request);
  }
  getReplay(replayId: string): Promise<ReplayStatus> {
    return this.replays.get(replayId);
  }
  listReplays(filter: { module?: string; limit?: number }): Promise<Replay[]> {
    return this.replays.list(filter);
  }

  // -- dead letters -----------------------------------------------------------------------------
  listDeadLetters(filter: { module?: string; limit?: number }): Promise<DeadLetter[]> {
    return this.deadLetters.list(filter);
  }
  redrive(id: string): Promise<Job | null> {
    return this.deadLetters.redrive(id);
  }
  discard(id: string): Promise<void> {
    return this.deadLetters.discard(id);
  }
  redriveMany(selector: DeadLetterSelector): Promise<{ redriven: number; jobs: Job[] }> {
    return this.deadLetters.redriveMany(selector);
  }
  discardMany(selector: DeadLetterSelector): Promise<{ discarded: number }> {
    return this.deadLetters.discardMany(selector);
  }

  // -- blobs ------------------------------------------------------------------------------------
  putBlob(source: Readable): Promise<BlobRef> {
    return this.blobs.put(source);
  }
  getBlob(
    sha256: string,
    range?: { start: number; end: number },
  ): Promise<{ ref: BlobRef; stream: Readable }> {
    return this.blobs.get(sha256, range);
  }
  statBlob(sha256: string): Promise<BlobRef> {
    return this.blobs.stat(sha256);
  }
}
