/**
 * Domain types shared by every component. Ports speak these types, never a datastore's.
 */

/** One metadata pair, exactly as the module contract's key/value arrays carry it. */
export interface KeyValue {
  key: string;
  value: string;
}

/** Reference to a blob: content address plus size. */
export interface BlobRef {
  sha256: string;
  size: number;
}

/** A file carried by an event, at a path relative to the module's `in/data/`. */
export interface FileRef extends BlobRef {
  path: string;
}

/** An event: immutable once stored. */
export interface IonEvent {
  eventId: string;
  type: string;
  correlationId: string;
  /** The event whose job produced this one; null for root events. */
  parentEventId: string | null;
  /** `api` for root events published through the API, else the module name that raised it. */
  source: string;
  /** The job that raised it; null for root events. */
  sourceJobId: string | null;
  /** Metadata in the order the producer wrote it. */
  data: KeyValue[];
  files: FileRef[];
  /** ISO-8601 timestamp. */
  createdAt: string;
}

export const JOB_STATES = [
  'pending',
  'running',
  'succeeded',
  'failed',
  'dead_lettered',
  'cancelled',
] as const;
/**
 * `pending`: created or released, waiting for a worker. `running`: an attempt is in flight.
 * `failed`: the last attempt failed and a retry is scheduled. `succeeded`, `cancelled` and
 * `dead_lettered` are terminal (`dead_lettered` until a redrive).
 */
export type JobState = (typeof JOB_STATES)[number];

/** The states a job ends in: nothing runs it again unless a redrive or a replay says so. */
const ENDED_JOB_STATES: ReadonlySet<JobState> = new Set([
  'succeeded',
  'dead_lettered',
  'cancelled',
]);

export function jobHasEnded(state: JobState): boolean {
  return ENDED_JOB_STATES.has(state);
}

/** Jobs counted by state, every state present. */
export type JobStateCounts = Record<JobState, number>;

/** Counts of `counts` (state, number) by state, every state present (zero when absent). */
export function jobStateCounts(
  counts: { state: string; n: number | string }[] = [],
): JobStateCounts {
  const states = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as JobStateCounts;
  for (const c of counts) if (c.state in states) states[c.state as JobState] = Number(c.n);
  return states;
}

/** Who is at fault for a failed attempt. */
export type FailureKind = 'module' | 'platform';

export interface Job {
  /** Deterministic from (module, eventId), and from the replay id for a replayed job. */
  jobId: string;
  module: string;
  moduleVersion: number;
  eventId: string;
  correlationId: string;
  state: JobState;
  /** Number of attempts started so far. */
  attempts: number;
  createdAt: string;
  updatedAt: string;
  /** When the last attempt finished (terminal or not); null while none has. */
  finishedAt: string | null;
  /** Message of the last failure, null if none. */
  lastError: string | null;
  /** Every file the successful attempt left in out/data (empty until it succeeds). */
  outputs: FileRef[];
  /** The replay that created this job; null for a job the event's publication created. */
  replayId: string | null;
  /** For a replayed job: the module's ordinary job on the same event, when there was one. */
  replayOf: string | null;
  /** The module version a replay asked for; null runs the module's current version. */
  pinnedVersion: number | null;
  /** When a cancel was asked for while the job ran; null when none was. */
  cancelRequestedAt: string | null;
}

export type AttemptOutcome = 'running' | 'succeeded' | 'failed';

export interface Attempt {
  jobId: string;
  /** 1-based. */
  attempt: number;
  moduleVersion: number;
  workerId: string;
  outcome: AttemptOutcome;
  startedAt: string;
  finishedAt: string | null;
  durationMs: number | null;
  exitCode: number | null;
  /** Stable error code (see core/errors.ts) when the attempt failed. */
  errorCode: string | null;
  errorKind: FailureKind | null;
  error: string | null;
  /**
   * Last few KiB of stdout+stderr. While the attempt runs, the worker refreshes it (with
   * `logSize`) about once a second, which is what following a log live reads.
   */
  logTail: string;
  /** Bytes of log written so far (live while running); null when not recorded. */
  logSize: number | null;
  /** Blob holding the whole log of the attempt, when it was kept. */
  logBlob: string | null;
}

export interface Insight {
  jobId: string;
  module: string;
  eventId: string;
  correlationId: string;
  key: string;
  value: string;
  createdAt: string;
}

export interface DeadLetter {
  /** Equal to the job id: a job is dead-lettered at most once at a time. */
  id: string;
  jobId: string;
  module: string;
  /** Null when the bus message itself was malformed. */
  eventId: string | null;
  reason: string;
  attempts: number;
  logTail: string;
  createdAt: string;
}

/** Where a module's runs happen: a host process, a container on the worker's host, or a pod. */
export const EXECUTOR_KINDS = ['local', 'docker', 'kubernetes'] as const;
export type ExecutorKind = (typeof EXECUTOR_KINDS)[number];

/** When a container image is pulled before a run. */
export type PullPolicy = 'always' | 'if-not-present' | 'never';

/** How a module runs. */
export interface RunSpec {
  /**
   * argv; resolved against the pipeline file's directory when relative paths are used.
   * Absent only with an `image`: the image's entrypoint then runs (with `args`).
   */
  command?: string[];
  /** Arguments after the command, or after the image's entrypoint when there is no command. */
  args?: string[];
  /** Working directory the command is resolved from (absolute); the process runs in the job dir. */
  cwd?: string;
  /** Container image (docker and kubernetes executors). */
  image?: string;
  /** When the image is pulled; `if-not-present` by default. */
  pull?: PullPolicy;
  /** Container network: `none` (the default), `bridge`, `host` or a network's name. */
  network?: string;
  /** User (and group) the container runs as, as Docker takes it: `1000`, `1000:1000`, `nobody`. */
  user?: string;
}

/** Limits of one run (containers and pods; the local executor ignores them). */
export interface Resources {
  /** CPU cores, fractions allowed (`0.5`). */
  cpu?: number;
  /** Memory limit in bytes. */
  memoryBytes?: number;
  /** GPUs to request. */
  gpu?: number;
}

/** A warm module: long-lived processes that take one job after another (docs/modules.md). */
export interface WarmSpec {
  /** Jobs a process takes before it is replaced. */
  maxJobs: number;
  /** How long an idle process is kept. */
  idleTimeoutMs: number;
}

/** A module as declared in a pipeline file, after validation and defaults. */
export interface ModuleSpec {
  name: string;
  subscribes: string[];
  publishes: string[];
  /** Where it runs; absent: the worker's default executor (`executor.kind` in its config). */
  executor?: ExecutorKind;
  run: RunSpec;
  /** Retries after the first attempt (0 = one attempt only). */
  retries: number;
  timeoutMs: number;
  concurrency: number;
  env: Record<string, string>;
  resources?: Resources;
  /** Present when the module runs warm. */
  warm?: WarmSpec;
}

/** A stored module: its spec plus bookkeeping. Each change of spec makes a new version. */
export interface ModuleRecord extends ModuleSpec {
  version: number;
  paused: boolean;
  createdAt: string;
  updatedAt: string;
}

/** What a replay selects: one event, or every event of a type in a time range. */
export type ReplaySelector = { eventId: string } | { type: string; since?: string; until?: string };

/** A request to run a module again on past events; each selected event gets a new job. */
export interface Replay {
  replayId: string;
  module: string;
  /** The version to run; null runs whichever version is current when each job starts. */
  moduleVersion: number | null;
  selector: ReplaySelector;
  /** Jobs created so far. */
  jobs: number;
  createdAt: string;
}

/** A replay with its jobs counted by state. */
export interface ReplayStatus extends Replay {
  states: JobStateCounts;
}

/** The lineage of one correlation id. */
export interface Trace {
  correlationId: string;
  events: IonEvent[];
  jobs: Job[];
  insights: Insight[];
}
