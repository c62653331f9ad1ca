import type { Logger } from 'pino';
import type { BlobStore } from '../blob/blob-store.js';
import type { EventBus } from '../bus/event-bus.js';
import type { Executor } from '../executors/executor.js';
import type { DocumentStore } from '../store/document-store.js';

export interface DispatcherSettings {
  leaseMs: number;
  retryBaseDelayMs: number;
  retryMaxDelayMs: number;
  shutdownGraceMs: number;
  moduleRefreshMs: number;
  keepJobDirs: boolean;
}

/** Everything a dispatcher needs, injected by the composition root. */
export interface DispatcherDeps {
  store: DocumentStore;
  bus: EventBus;
  blobs: BlobStore;
  executor: Executor;
  logger: Logger;
  /** Identifies this worker process in attempt records. */
  workerId: string;
  /** Job directories and attempt logs live under here. */
  dataDir: string;
  /** The platform part of every module's environment (PATH, HOME, LANG); never secrets. */
  baseEnv: Readonly<Record<string, string>>;
  settings: DispatcherSettings;
  /** Called after a commit wrote outbox rows, so the relay publishes without waiting. */
  onCommitted?: () => void;
}
