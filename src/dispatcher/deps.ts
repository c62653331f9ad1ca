import type { Logger } from 'pino';
import type { BlobStore } from '../blob/blob-store.js';
import type { EventBus } from '../bus/event-bus.js';
import type { JobHosts } from '../executors/job-hosts.js';
import type { DocumentStore } from '../store/document-store.js';
import type { Tracing } from '../telemetry/tracing.js';

export interface DispatcherSettings {
  leaseMs: number;
  retryBaseDelayMs: number;
  retryMaxDelayMs: number;
  shutdownGraceMs: number;
  moduleRefreshMs: number;
  keepJobDirs: boolean;
}

/**
 * How one job attempt ended, as reported to {@link DispatcherDeps.onAttemptFinished}:
 * `succeeded` (committed), `failed` (a retry is scheduled), `dead_lettered` (retries
 * exhausted), `released` (shutdown: handed back uncounted), `cancelled` (stopped on request).
 */
export interface AttemptFinished {
  module: string;
  outcome: 'succeeded' | 'failed' | 'dead_lettered' | 'released' | 'cancelled';
  /** How long the module ran; null when it never started (e.g. preparing its inputs failed). */
  durationMs: number | null;
}

/** Everything a dispatcher needs, injected by the composition root. */
export interface DispatcherDeps {
  store: DocumentStore;
  bus: EventBus;
  blobs: BlobStore;
  /** Where each module's attempts run (local processes, containers, pods). */
  jobHosts: JobHosts;
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
  /** Spans for each job attempt; off when absent. */
  tracing?: Tracing;
  /** Called once the outcome of an attempt is decided (metrics). Must not throw. */
  onAttemptFinished?: (info: AttemptFinished) => void;
}
