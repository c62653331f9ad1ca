import type { Readable } from 'node:stream';
import type { BlobStore } from '../blob/blob-store.js';
import type { EventBus } from '../bus/event-bus.js';
import { ConflictError, NotFoundError, ValidationError } from '../core/errors.js';
import { newId, rootEventIdFromKey } from '../core/ids.js';
import { EVENT_TYPE, moduleSpecSchema, parsePipeline } from '../core/pipeline.js';
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
  Trace,
} from '../core/types.js';
import { parseOrThrow } from '../core/validation.js';
import { normaliseRelativePath } from '../handler/safe-path.js';
import type { DocumentStore, JobFilter } from '../store/document-store.js';

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
  constructor(private readonly deps: ControlDeps) {}

  /**
   * Applies a pipeline: creates or updates every module it declares (a changed module gets a
   * new version) and, with `prune`, deletes modules it no longer declares.
   */
  async applyPipeline(doc: unknown, options: { prune?: boolean } = {}): Promise<ApplyResult> {
    const pipeline = parsePipeline(doc);
    const { store, bus } = this.deps;
    const result: ApplyResult = { modules: [] };
    for (const spec of pipeline.modules) {
      parseOrThrow(moduleSpecSchema, spec, `module ${spec.name}`);
      // Subscribe first, so events published right after the apply are kept for the module.
      await bus.ensureSubscription({
        name: spec.name,
        topics: spec.subscribes,
        leaseMs: this.deps.leaseMs,
      });
      const { module, change } = await store.upsertModule(spec);
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

  listJobs(filter: JobFilter): Promise<Job[]> {
    return this.deps.store.listJobs(filter);
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

  listDeadLetters(filter: { module?: string; limit?: number }): Promise<DeadLetter[]> {
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
}
