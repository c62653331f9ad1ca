import type { BlobStore } from '../blob/blob-store.js';
import type { EventBus } from '../bus/event-bus.js';
import { ValidationError } from '../core/errors.js';
import type { IonEvent } from '../core/types.js';
import type { AttemptFinished } from '../dispatcher/deps.js';
import type { DocumentStore } from '../store/document-store.js';

/** What the operations behind the management API need: the backends and two wake-ups. */
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
 * Observes what happens through this process, for metrics. Called synchronously; an
 * observer must be cheap and must not throw (a throwing observer is ignored).
 */
export interface ControlObserver {
  /** A root event was stored (not called for an idempotent replay of an existing one). */
  eventPublished?(event: IonEvent): void;
  /** A job attempt of a worker in this process ended (forwarded by the composition root). */
  attemptFinished?(info: AttemptFinished): void;
}

/** The observers of one control layer; a throwing observer never breaks the operation. */
export class ControlObservers {
  private readonly observers = new Set<ControlObserver>();

  /** Adds an observer; returns the function that removes it again. */
  add(observer: ControlObserver): () => void {
    this.observers.add(observer);
    return () => {
      this.observers.delete(observer);
    };
  }

  notify(call: (observer: ControlObserver) => void): void {
    for (const observer of this.observers) {
      try {
        call(observer);
      } catch {
        // Observation must never break the operation observed.
      }
    }
  }
}

/**
 * Page sizes are whole numbers from 1 to 1000. Checked here as well as by the route schemas:
 * query coercion turns "Infinity" into a number the schema's bounds do not catch.
 */
export function checkLimit(limit: number | undefined): void {
  if (limit !== undefined && (!Number.isSafeInteger(limit) || limit < 1 || limit > 1000)) {
    throw new ValidationError(`limit must be a whole number from 1 to 1000, got ${limit}`, [
      { path: 'limit', message: 'must be a whole number from 1 to 1000' },
    ]);
  }
}
