import type { Readable } from 'node:stream';
import type { BlobStore } from '../blob/blob-store.js';
import type { EventBus } from '../bus/event-bus.js';
import {
  ConflictError,
  IonError,
  NotFoundError,
  ValidationError,
  errorMessage,
} from '../core/errors.js';
import { newId, rootEventIdFromKey } from '../core/ids.js';
import { EVENT_TYPE, moduleSpecSchema, parseModule, parsePipeline } from '../core/pipeline.js';
import { isReservedEventType, reservedTypeMessage } from '../core/trace-settled.js';
import { nowIso } from '../core/time.js';
import type {
  Attempt,
  BlobRef,
  DeadLetter,
  FileRef,
  IonEvent,
  Job,
  KeyValue,
  ModuleRecord,
  ModuleSpec,
  Replay,
  ReplayStatus,
  Trace,
} from '../core/types.js';
import { parseOrThrow } from '../core/validation.js';
import { normaliseRelativePath } from '../handler/safe-path.js';
import type {
  CancelResult,
  DocumentStore,
  JobFilter,
  ModuleVersion,
  UpsertModuleResult,
} from '../store/document-store.js';
import type { AttemptFinished } from '../dispatcher/deps.js';
import * as eventQueries from './event-queries.js';
import * as jobActions from './job-actions.js';

export interface PublishInput {
  type: string;
  data?: KeyValue[] | Record<string, string>;
  files?: { path: string; sha256: string }[];
  idempotencyKey?: string;
}

export interface ApplyResult {
  modules: {
    name: string;
    version: number;
    change: 'created' | 'updated' | 'unchanged' | 'deleted';
  }[];
}

/** A retried publication must carry the same type, metadata and files as the first. */
function samePublication(a: IonEvent, b: IonEvent): boolean {
  const files = (e: IonEvent) => e.files.map((f) => [f.path, f.sha256]);
  return (
    a.type === b.type &&
    JSON.stringify(a.data) === JSON.stringify(b.data) &&
    JSON.stringify(files(a)) === JSON.stringify(files(b))
  );
}

/**
 * Observes what happens through this process, for metrics. Called synchronously; an
 * observer must be cheap and must not throw (a throwing observer is ignored).
 */
export interface ControlObserver {
  /** A root event was stored (not called for an idempotent replay of an existing one). */
  eventPublished?(event: IonEvent): void;
  /** A job attempt of a worker in this process ended (forwarded by the composition root). */
  attemptFinished?(info: AttemptFinished): void;
}

/** The answer of one backend to a readiness probe. */
export type BackendCheck =
  { ok: true; latencyMs: number } | { ok: false; latencyMs: number; error: string };

export interface Readiness {
  ready: boolean;
  checks: { bus: BackendCheck; store: BackendCheck; blobs: BackendCheck };
}

/**
 * The bus probe sends to this subscription, which can never exist: subscriptions are named
 * after modules and a module name must start with a lower-case letter.
 */
const PROBE_SUBSCRIPTION = '_ion_readiness_probe';
/** Content address probed in the blob store: the sha256 of no bytes; present or not. */
const PROBE_SHA256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855';

/**
 * Page sizes are whole numbers from 1 to 1000. Checked here as well as by the route schemas:
 * query coercion turns "Infinity" into a number the schema's bounds do not catch.
 */
function checkLimit(limit: number | undefined): void {
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1 || limit > 1000)) {
    throw new ValidationError(`limit must be a whole number from 1 to 1000, got ${limit}`, [
      { path: 'limit', message: 'must be a whole number from 1 to 1000' },
    ]);
  }
}

export interface ControlDeps {
  store: DocumentStore;
  bus: EventBus;
  blobs: BlobStore;
  leaseMs: number;
  /** Called after events were written to the outbox. */
  onPublished?: () => void;
  /** Called after modules changed. */
  onModulesChanged?: () => void;
}

/**
 * The operations behind the management API, free of HTTP. Routes validate the shape of a
 * request; this layer checks what needs the stores (blob existence, module names) and keeps
 * the invariants (a subscription exists before a module's first event can arrive).
 */
export class Control {
  private readonly observers = new Set<ControlObserver>();

  constructor(private readonly deps: ControlDeps) {}

  /** Adds an observer; returns the function that removes it again. */
  observe(observer: ControlObserver): () => void {
    this.observers.add(observer);
    return () => {
      this.observers.delete(observer);
    };
  }

  /** Passes a dispatcher's attempt outcome on to the observers (wired by the composition root). */
  noteAttemptFinished(info: AttemptFinished): void {
    this.notify((o) => o.attemptFinished?.(info));
  }

  private notify(call: (observer: ControlObserver) => void): void {
    for (const observer of this.observers) {
      try {
        call(observer);
      } catch {
        // Observation must never break the operation observed.
      }
    }
  }

  /**
   * Asks every backend a cheap, read-only question, each bounded by `timeoutMs`:
   * the store its modules revision, the blob store whether a fixed address exists, and the
   * bus to send to a subscription that cannot exist (it must answer "not found", which
   * needs a round trip to the broker but stores nothing).
   */
  async readiness(timeoutMs = 2000): Promise<Readiness> {
    const { bus, store, blobs } = this.deps;
    const [busCheck, storeCheck, blobsCheck] = await Promise.all([
      probe(timeoutMs, async () => {
        try {
          await bus.sendTo(PROBE_SUBSCRIPTION, {
            id: 'readiness-probe',
            topic: 'ion.probe',
            body: '',
          });
        } catch (err) {
          if (err instanceof NotFoundError) return;
          throw err;
        }
      }),
      probe(timeoutMs, () => store.modulesRevision()),
      probe(timeoutMs, () => blobs.stat(PROBE_SHA256)),
    ]);
    return {
      ready: busCheck.ok && storeCheck.ok && blobsCheck.ok,
      checks: { bus: busCheck, store: storeCheck, blobs: blobsCheck },
    };
  }

  /**
   * Applies a pipeline: creates or updates every module it declares (a changed module gets a
   * new version) and, with `prune`, deletes modules it no longer declares.
   */
  async applyPipeline(doc: unknown, options: { prune?: boolean } = {}): Promise<ApplyResult> {
    const pipeline = parsePipeline(doc);
    const { store, bus } = this.deps;
    const result: ApplyResult = { modules: [] };
    for (const spec of pipeline.modules) {
      const { module, change } = await this.installModule(spec);
      result.modules.push({ name: module.name, version: module.version, change });
    }
    if (options.prune === true) {
      const declared = new Set(pipeline.modules.map((m) => m.name));
      for (const module of await store.listModules()) {
        if (declared.has(module.name)) continue;
        await store.deleteModule(module.name);
        await bus.deleteSubscription(module.name);
        result.modules.push({ name: module.name, version: module.version, change: 'deleted' });
      }
    }
    this.deps.onModulesChanged?.();
    return result;
  }

  /** Subscribes a module, then stores it (a changed spec makes a new version). */
  private async installModule(spec: ModuleSpec): Promise<UpsertModuleResult> {
    parseOrThrow(moduleSpecSchema, spec, `module ${spec.name}`);
    // Subscribe first, so events published right after the change are kept for the module.
    await this.deps.bus.ensureSubscription({
      name: spec.name,
      topics: spec.subscribes,
      leaseMs: this.deps.leaseMs,
    });
    return this.deps.store.upsertModule(spec);
  }

  /**
   * Creates or updates one module from a document shaped like one entry of a pipeline file;
   * the other modules are left as they are.
   */
  async putModule(name: string, doc: unknown): Promise<UpsertModuleResult> {
    const result = await this.installModule(parseModule(name, doc));
    this.deps.onModulesChanged?.();
    return result;
  }

  listModules(): Promise<ModuleRecord[]> {
    return this.deps.store.listModules();
  }

  async getModule(name: string): Promise<ModuleRecord> {
    const module = await this.deps.store.getModule(name);
    if (module === null) throw new NotFoundError(`module "${name}" does not exist`);
    return module;
  }

  putBlob(source: Readable): Promise<BlobRef> {
    return this.deps.blobs.put(source);
  }

  async getBlob(
    sha256: string,
    range?: { start: number; end: number },
  ): Promise<{ ref: BlobRef; stream: Readable }> {
    const ref = await this.deps.blobs.stat(sha256);
    if (ref === null) throw new NotFoundError(`blob ${sha256} does not exist`);
    return { ref, stream: await this.deps.blobs.get(sha256, range) };
  }

  /** Publishes a root event: stored with its outbox row in one transaction, then relayed. */
  async publish(input: PublishInput): Promise<{ event: IonEvent; created: boolean }> {
    if (!EVENT_TYPE.test(input.type)) {
      throw new ValidationError(
        `invalid event type "${input.type}": must be dot-separated words of letters, digits, "_" or "-"`,
        [{ path: 'type', message: 'invalid event type' }],
      );
    }
    if (isReservedEventType(input.type)) {
      throw new ValidationError(`invalid event type: ${reservedTypeMessage(input.type)}`, [
        { path: 'type', message: 'reserved event type' },
      ]);
    }
    const data: KeyValue[] = Array.isArray(input.data)
      ? input.data.map(({ key, value }) => ({ key, value }))
      : Object.entries(input.data ?? {}).map(([key, value]) => ({ key, value }));
    const files: FileRef[] = [];
    const seen = new Set<string>();
    for (const [i, file] of (input.files ?? []).entries()) {
      const checked = normaliseRelativePath(file.path, "the module's in/data");
      if (!checked.ok)
        throw new ValidationError(`files[${i}].path "${file.path}" ${checked.reason}`, [
          { path: `files[${i}].path`, message: checked.reason },
        ]);
      if (seen.has(checked.path))
        throw new ValidationError(`files[${i}].path "${checked.path}" is listed twice`, [
          { path: `files[${i}].path`, message: 'duplicate path' },
        ]);
      seen.add(checked.path);
      const ref = await this.deps.blobs.stat(file.sha256);
      if (ref === null)
        throw new ValidationError(
          `files[${i}].sha256 names a blob that does not exist; upload it first`,
          [{ path: `files[${i}].sha256`, message: 'unknown blob' }],
        );
      files.push({ path: checked.path, ...ref });
    }
    const eventId =
      input.idempotencyKey === undefined ? newId() : rootEventIdFromKey(input.idempotencyKey);
    const event: IonEvent = {
      eventId,
      type: input.type,
      correlationId: eventId,
      parentEventId: null,
      source: 'api',
      sourceJobId: null,
      data,
      files,
      createdAt: nowIso(),
    };
    const stored = await this.deps.store.insertRootEvent(event);
    if (stored.created) {
      this.deps.onPublished?.();
      this.notify((o) => o.eventPublished?.(stored.event));
    } else if (!samePublication(stored.event, event)) {
      throw new ConflictError(
        `idempotency key "${input.idempotencyKey}" was already used for a different event (${stored.event.type} ${stored.event.eventId})`,
      );
    }
    return stored;
  }

  async getEvent(eventId: string): Promise<IonEvent> {
    const event = await this.deps.store.getEvent(eventId);
    if (event === null) throw new NotFoundError(`event ${eventId} does not exist`);
    return event;
  }

  async trace(correlationId: string): Promise<Trace> {
    const trace = await this.deps.store.trace(correlationId);
    if (trace.events.length === 0)
      throw new NotFoundError(`no events with correlation id ${correlationId}`);
    return trace;
  }

  /** Jobs, most recently updated first; `since`/`until` bound when they last changed. */
  listJobs(filter: JobFilter): Promise<Job[]> {
    checkLimit(filter.limit);
    const since = eventQueries.isoTime('since', filter.since);
    const until = eventQueries.isoTime('until', filter.until);
    return this.deps.store.listJobs({
      ...filter,
      ...(since === undefined ? {} : { since }),
      ...(until === undefined ? {} : { until }),
    });
  }

  async getJob(jobId: string): Promise<{ job: Job; attempts: Attempt[] }> {
    const job = await this.deps.store.getJob(jobId);
    if (job === null) throw new NotFoundError(`job ${jobId} does not exist`);
    return { job, attempts: await this.deps.store.listAttempts(jobId) };
  }

  /** The log of one attempt (the last by default): the whole kept log, or its tail. */
  async jobLog(
    jobId: string,
    attemptNo?: number,
  ): Promise<{ attempt: Attempt; stream: Readable | null }> {
    const { attempts } = await this.getJob(jobId);
    const attempt =
      attemptNo === undefined
        ? attempts[attempts.length - 1]
        : attempts.find((a) => a.attempt === attemptNo);
    if (attempt === undefined)
      throw new NotFoundError(
        attemptNo === undefined
          ? `job ${jobId} has no attempts yet`
          : `job ${jobId} has no attempt ${attemptNo}`,
      );
    if (attempt.logBlob !== null && (await this.deps.blobs.stat(attempt.logBlob)) !== null) {
      return { attempt, stream: await this.deps.blobs.get(attempt.logBlob) };
    }
    return { attempt, stream: null };
  }

  /** Follows a job's log live (see {@link jobActions.followJobLog}). */
  followJobLog(
    jobId: string,
    attempt: number | undefined,
    signal: AbortSignal,
  ): Promise<{ attempt: number | null; stream: Readable }> {
    return jobActions.followJobLog(this.deps.store, this.deps.blobs, jobId, attempt, signal);
  }

  /** Cancels a job (see {@link jobActions.cancelJob}). */
  cancelJob(jobId: string): Promise<Exclude<CancelResult, { status: 'settled' }>> {
    return jobActions.cancelJob(this.deps.store, jobId);
  }

  // -- replays ----------------------------------------------------------------------------------

  /** Runs a module again on past events (see {@link jobActions.startReplay}). */
  replay(request: jobActions.ReplayRequest): Promise<jobActions.ReplayOutcome> {
    return jobActions.startReplay(this.deps.store, request, () => this.deps.onPublished?.());
  }

  getReplay(replayId: string): Promise<ReplayStatus> {
    return jobActions.getReplay(this.deps.store, replayId);
  }

  listReplays(filter: { module?: string; limit?: number }): Promise<Replay[]> {
    checkLimit(filter.limit);
    return this.deps.store.listReplays(filter);
  }

  listDeadLetters(filter: { module?: string; limit?: number }): Promise<DeadLetter[]> {
    checkLimit(filter.limit);
    return this.deps.store.listDeadLetters(filter);
  }

  /** Sends a dead-lettered job back to its module; its attempt history is kept. */
  async redrive(id: string): Promise<Job | null> {
    const dead = await this.deps.store.getDeadLetter(id);
    if (dead === null) throw new NotFoundError(`dead letter ${id} does not exist`);
    const job = await this.deps.store.redriveDeadLetter(id);
    this.deps.onPublished?.();
    return job;
  }

  async discard(id: string): Promise<void> {
    if (!(await this.deps.store.discardDeadLetter(id)))
      throw new NotFoundError(`dead letter ${id} does not exist`);
  }

  // -- module admin ---------------------------------------------------------------------------

  /**
   * Deletes a module: its dispatching stops (at the pool's next refresh) and its bus
   * subscription goes, as with `prune`; its versions, jobs and events are kept.
   */
  async deleteModule(name: string): Promise<void> {
    if (!(await this.deps.store.deleteModule(name)))
      throw new NotFoundError(`module "${name}" does not exist`);
    await this.deps.bus.deleteSubscription(name);
    this.deps.onModulesChanged?.();
  }

  /**
   * Pauses or resumes a module. While paused no job of it starts; its subscription stays, so
   * events published meanwhile wait in the bus and run after the resume.
   */
  async setModulePaused(name: string, paused: boolean): Promise<ModuleRecord> {
    const module = await this.deps.store.setModulePaused(name, paused);
    if (module === null) throw new NotFoundError(`module "${name}" does not exist`);
    this.deps.onModulesChanged?.();
    return module;
  }

  /** Every version of a module, oldest first; a deleted module keeps its history. */
  async listModuleVersions(name: string): Promise<ModuleVersion[]> {
    const versions = await this.deps.store.listModuleVersions(name);
    if (versions.length === 0) throw new NotFoundError(`module "${name}" does not exist`);
    return versions;
  }

  /** Redrives the dead letters a selector names (see {@link DeadLetterSelector}). */
  async redriveMany(selector: DeadLetterSelector): Promise<{ redriven: number; jobs: Job[] }> {
    const jobs: Job[] = [];
    let redriven = 0;
    await this.eachDeadLetter(selector, async (id) => {
      if ((await this.deps.store.getDeadLetter(id)) === null) return;
      const job = await this.deps.store.redriveDeadLetter(id);
      redriven += 1;
      if (job !== null) jobs.push(job);
    });
    if (redriven > 0) this.deps.onPublished?.();
    return { redriven, jobs };
  }

  /** Discards the dead letters a selector names (see {@link DeadLetterSelector}). */
  async discardMany(selector: DeadLetterSelector): Promise<{ discarded: number }> {
    let discarded = 0;
    await this.eachDeadLetter(selector, async (id) => {
      if (await this.deps.store.discardDeadLetter(id)) discarded += 1;
    });
    return { discarded };
  }

  private async eachDeadLetter(
    selector: DeadLetterSelector,
    fn: (id: string) => Promise<void>,
  ): Promise<void> {
    const { ids, module, all } = selector;
    if (ids !== undefined && all === true)
      throw new ValidationError('give either ids or all, not both', [
        { path: 'ids', message: 'not allowed together with all' },
      ]);
    if ((ids === undefined || ids.length === 0) && all !== true && module === undefined)
      throw new ValidationError('say which dead letters: ids, module or all: true', [
        { path: '', message: 'empty selector' },
      ]);
    if (ids !== undefined) {
      for (const id of new Set(ids)) {
        if (module !== undefined) {
          const dead = await this.deps.store.getDeadLetter(id);
          if (dead === null || dead.module !== module) continue;
        }
        await fn(id);
      }
      return;
    }
    // Page through until a page brings nothing new: each id is handled once, even when a
    // redriven job fails again and is dead-lettered anew while this runs.
    const seen = new Set<string>();
    for (;;) {
      const page = await this.deps.store.listDeadLetters({
        ...(module === undefined ? {} : { module }),
        limit: 1000,
      });
      const fresh = page.filter((d) => !seen.has(d.id));
      if (fresh.length === 0) return;
      for (const dead of fresh) {
        seen.add(dead.id);
        await fn(dead.id);
      }
    }
  }

  // -- event queries (listEvents) --
  listEvents(
    filter: import('../store/document-store.js').EventFilter,
  ): Promise<{ events: IonEvent[]; nextCursor: string | null }> {
    return eventQueries.listEvents(this.deps.store, filter);
  }

  lineage(eventId: string): Promise<eventQueries.Lineage> {
    return eventQueries.lineage(this.deps.store, eventId);
  }

  queryInsights(filter: eventQueries.InsightQuery): Promise<eventQueries.InsightHit[]> {
    return eventQueries.queryInsights(this.deps.store, filter);
  }

  async statBlob(sha256: string): Promise<BlobRef> {
    const ref = await this.deps.blobs.stat(sha256);
    if (ref === null) throw new NotFoundError(`blob ${sha256} does not exist`);
    return ref;
  }
}

/**
 * Which dead letters a bulk operation acts on: the listed `ids` (only those of `module` when
 * given too), or every one of `module`, or every one (`all: true`, narrowed by `module`).
 * An empty selector is refused, so a bare request never touches everything by accident.
 */
export interface DeadLetterSelector {
  ids?: string[];
  module?: string;
  all?: boolean;
}

/** Runs one readiness probe with a deadline; never throws. */
async function probe(timeoutMs: number, fn: () => Promise<unknown>): Promise<BackendCheck> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(
      () => reject(new IonError('timeout', `no answer within ${timeoutMs}ms`)),
      timeoutMs,
    );
  });
  const attempt = fn();
  attempt.catch(() => undefined); // a late failure after the deadline is not unhandled
  try {
    await Promise.race([attempt, deadline]);
    return { ok: true, latencyMs: Date.now() - started };
  } catch (err) {
    const code = err instanceof IonError ? err.code : 'unavailable';
    return { ok: false, latencyMs: Date.now() - started, error: `${code}: ${errorMessage(err)}` };
  } finally {
    clearTimeout(timer);
  }
}
