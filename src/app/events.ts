import { ConflictError, NotFoundError, ValidationError } from '../core/errors.js';
import { newId, rootEventIdFromKey } from '../core/ids.js';
import { EVENT_TYPE } from '../core/pipeline.js';
import { isReservedEventType, reservedTypeMessage } from '../core/trace-settled.js';
import { nowIso } from '../core/time.js';
import type { FileRef, IonEvent, KeyValue, Trace } from '../core/types.js';
import { normaliseRelativePath } from '../handler/safe-path.js';
import type { EventFilter } from '../store/document-store.js';
import type { ControlDeps, ControlObservers } from './control-deps.js';
import * as eventQueries from './event-queries.js';

export interface PublishInput {
  type: string;
  data?: KeyValue[] | Record<string, string>;
  files?: { path: string; sha256: string }[];
  idempotencyKey?: string;
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
 * The event operations of the management API: publishing a root event (API, gateway and
 * CloudEvents all come here) and reading events, their lineage, traces and insights.
 */
export class Events {
  constructor(
    private readonly deps: Pick<ControlDeps, 'store' | 'blobs' | 'onPublished'>,
    private readonly observers: ControlObservers,
  ) {}

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
      this.observers.notify((o) => o.eventPublished?.(stored.event));
    } else if (!samePublication(stored.event, event)) {
      throw new ConflictError(
        `idempotency key "${input.idempotencyKey}" was already used for a different event (${stored.event.type} ${stored.event.eventId})`,
      );
    }
    return stored;
  }

  async get(eventId: string): Promise<IonEvent> {
    const event = await this.deps.store.getEvent(eventId);
    if (event === null) throw new NotFoundError(`event ${eventId} does not exist`);
    return event;
  }

  list(filter: EventFilter): Promise<{ events: IonEvent[]; nextCursor: string | null }> {
    return eventQueries.listEvents(this.deps.store, filter);
  }

  lineage(eventId: string): Promise<eventQueries.Lineage> {
    return eventQueries.lineage(this.deps.store, eventId);
  }

  async trace(correlationId: string): Promise<Trace> {
    const trace = await this.deps.store.trace(correlationId);
    if (trace.events.length === 0)
      throw new NotFoundError(`no events with correlation id ${correlationId}`);
    return trace;
  }

  insights(filter: eventQueries.InsightQuery): Promise<eventQueries.InsightHit[]> {
    return eventQueries.queryInsights(this.deps.store, filter);
  }
}
