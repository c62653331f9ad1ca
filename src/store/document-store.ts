import type {
  Attempt,
  DeadLetter,
  FailureKind,
  FileRef,
  Insight,
  IonEvent,
  Job,
  JobState,
  KeyValue,
  ModuleRecord,
  ModuleSpec,
  Replay,
  ReplayStatus,
  Trace,
} from '../core/types.js';
import type { TokenRecord } from '../core/tokens.js';
import type { Settlement } from '../core/trace-settled.js';

/**
 * The document store port: modules, events, jobs and attempts, insights, the outbox and
 * dead letters. Every method that changes several records does so in one transaction, so the
 * commit protocol of DESIGN.md holds whatever adapter is behind it.
 */

export interface BeginAttemptInput {
  jobId: string;
  module: string;
  moduleVersion: number;
  event: IonEvent;
  workerId: string;
  startedAt: string;
  /**
   * The new attempt's lease: until then (renewed with `renewAttempt`) the attempt counts as
   * alive, and a duplicate delivery of the same job elsewhere gets `busy` instead of
   * closing it as lost. Compared with other workers' `startedAt`, so clocks must agree.
   */
  leaseUntil: string;
}

export type BeginAttemptResult =
  /** The attempt was recorded; `attempt` is its 1-based number. */
  | {
      status: 'started';
      job: Job;
      attempt: number;
      /** Attempts counted against the retry budget so far (since the last redrive). */
      failures: number;
    }
  /** Another worker holds a live attempt of this job: try again after `leaseUntil`. */
  | { status: 'busy'; job: Job; attempt: number; leaseUntil: string }
  /** The job already succeeded: the caller acks and does nothing else. */
  | { status: 'succeeded'; job: Job }
  /** The job is dead-lettered: the caller acks (a redrive re-sends it). */
  | { status: 'dead_lettered'; job: Job }
  /** The job was cancelled: the caller acks and does nothing else. */
  | { status: 'cancelled'; job: Job };

/**
 * What `renewAttempt` found: `held` (the lease was pushed out), `closed` (the attempt is no
 * longer running: closed elsewhere), `cancel_requested` (held, but a cancel was asked for:
 * the worker stops the module and records the attempt with `nextState: 'cancelled'`).
 */
export type RenewResult = 'held' | 'closed' | 'cancel_requested';

/** How far a running attempt's log has got, refreshed with each renewal. */
export interface LogProgress {
  logTail: string;
  logSize: number;
}

/** What `requestCancel` did. */
export type CancelResult =
  /** The job was waiting (pending, or failed with a retry due): it is cancelled now. */
  | { status: 'cancelled'; job: Job }
  /** An attempt is running: its worker will stop it and record the job as cancelled. */
  | { status: 'cancelling'; job: Job }
  /** The job had already ended (succeeded, dead-lettered or cancelled): nothing changed. */
  | { status: 'settled'; job: Job };

export interface FailAttemptInput {
  jobId: string;
  attempt: number;
  finishedAt: string;
  durationMs: number | null;
  exitCode: number | null;
  errorCode: string;
  errorKind: FailureKind;
  error: string;
  logTail: string;
  logBlob: string | null;
  /**
   * `failed`: a retry follows. `pending`: released without blame (shutdown). `dead_lettered`:
   * no retry; a dead letter row is written in the same transaction. `cancelled`: stopped on
   * request; no retry.
   */
  nextState: Extract<JobState, 'failed' | 'pending' | 'dead_lettered' | 'cancelled'>;
  /** Whether this attempt counts against the module's retry budget. */
  countsAsFailure: boolean;
  deadLetterReason?: string;
}

export interface CommitAttemptInput {
  jobId: string;
  attempt: number;
  finishedAt: string;
  durationMs: number;
  exitCode: number;
  logTail: string;
  logBlob: string | null;
  insights: KeyValue[];
  /** Every file left in out/data, persisted in the blob store. */
  outputs: FileRef[];
  /** Child events with deterministic ids; each is inserted if absent, with an outbox row. */
  children: IonEvent[];
}

export interface JobFilter {
  module?: string;
  state?: JobState;
  correlationId?: string;
  eventId?: string;
  replayId?: string;
  /** Inclusive lower bound on `updatedAt` (ISO 8601): jobs that changed since. */
  since?: string;
  /** Exclusive upper bound on `updatedAt` (ISO 8601). */
  until?: string;
  /** Most recent first; default 100. */
  limit?: number;
}

export interface InsightFilter {
  module?: string;
  key?: string;
  value?: string;
  correlationId?: string;
  jobId?: string;
  /** Values starting with this (matched literally: `%` and `_` are not wildcards). */
  valuePrefix?: string;
  /**
   * Only insights of jobs that also recorded every one of these exact key/value pairs (one
   * object per job: `label=car` AND `colour=red` on the same job). Combined with the others.
   */
  has?: readonly { key: string; value: string }[];
  /** Inclusive lower bound on `createdAt` (ISO 8601). */
  since?: string;
  /** Exclusive upper bound on `createdAt` (ISO 8601). */
  until?: string;
  limit?: number;
}

/** Filters of `listEvents`; all optional, combined with AND. */
export interface EventFilter {
  type?: string;
  /** The source: `api`, `gateway` or a module name. */
  source?: string;
  correlationId?: string;
  /** Inclusive lower bound on `createdAt` (ISO 8601). */
  since?: string;
  /** Exclusive upper bound on `createdAt` (ISO 8601). */
  until?: string;
  /** Page size; default 50. */
  limit?: number;
  /** The `nextCursor` of the previous page. */
  cursor?: string;
}

export interface OutboxEntry {
  /** The outbox row's own id (several rows may name one event: publication, redrives). */
  id: string;
  eventId: string;
  type: string;
  correlationId: string;
  /** Set when the entry targets one subscription only (redrive); null means publish by topic. */
  subscription: string | null;
  /**
   * The job the entry asks to run, when it is not the module's ordinary job on the event
   * (a replayed job); null otherwise.
   */
  jobId: string | null;
}

/** One event a replay runs its module on. */
export type ReplayTarget = Pick<IonEvent, 'eventId' | 'correlationId'>;

export interface UpsertModuleResult {
  module: ModuleRecord;
  /** `created`, `updated` (new version) or `unchanged`. */
  change: 'created' | 'updated' | 'unchanged';
}

/** One past or present version of a module, as `module_versions` keeps it. */
export interface ModuleVersion {
  version: number;
  spec: ModuleSpec;
  createdAt: string;
}

/**
 * What an adapter can and cannot do beyond the port's common contract, declared on the
 * adapter so the composition root reads it instead of knowing it.
 */
export interface StoreCapabilities {
  /**
   * Whether processes on other hosts can share this store (a database server), or only
   * processes on the host that holds its file.
   */
  sharedAcrossHosts: boolean;
}

/** A relay's claim on open settlements (see `claimSettlements`). */
export interface SettlementClaim {
  owner: string;
  limit: number;
  now: string;
  until: string;
}

export interface DocumentStore {
  /** What this adapter can do beyond the common contract. */
  readonly capabilities: StoreCapabilities;
  start(): Promise<void>;
  /** Idempotent. */
  close(): Promise<void>;

  // -- modules ------------------------------------------------------------------------------
  /** Stores a module; a spec that differs from the stored one makes a new version. */
  upsertModule(spec: ModuleSpec): Promise<UpsertModuleResult>;
  getModule(name: string): Promise<ModuleRecord | null>;
  /** Live (not deleted) modules, by name. */
  listModules(): Promise<ModuleRecord[]>;
  /** Marks deleted (history kept). Returns false when absent. */
  deleteModule(name: string): Promise<boolean>;
  /** Increases on every module change; lets dispatchers notice changes cheaply. */
  modulesRevision(): Promise<number>;

  // -- module admin -------------------------------------------------------------------------
  /**
   * Pauses or resumes a live module (dispatchers skip paused ones) and bumps the modules
   * revision. Returns the module, or null when absent or deleted.
   */
  setModulePaused(name: string, paused: boolean): Promise<ModuleRecord | null>;
  /** Every stored version of a module (deleted ones too), oldest first; empty when unknown. */
  listModuleVersions(name: string): Promise<ModuleVersion[]>;

  // -- events -------------------------------------------------------------------------------
  /**
   * Inserts a root event and its outbox row in one transaction. If an event with the same id
   * exists, nothing is written and the stored one is returned with `created: false`.
   */
  insertRootEvent(event: IonEvent): Promise<{ event: IonEvent; created: boolean }>;
  getEvent(eventId: string): Promise<IonEvent | null>;

  // -- jobs ---------------------------------------------------------------------------------
  getJob(jobId: string): Promise<Job | null>;
  listJobs(filter?: JobFilter): Promise<Job[]>;
  listAttempts(jobId: string): Promise<Attempt[]>;
  /**
   * Creates the job if absent and records a new running attempt, unless the job already
   * succeeded or is dead-lettered, or another attempt of it is running with a live lease
   * (`busy`). A running attempt whose lease lapsed (its worker died) is closed as failed
   * with `worker_lost` first.
   */
  beginAttempt(input: BeginAttemptInput): Promise<BeginAttemptResult>;
  /**
   * Pushes a running attempt's lease out and, when given, records how far its log has got.
   * Tells the worker whether the attempt is still its own and whether a cancel was asked for.
   */
  renewAttempt(
    jobId: string,
    attempt: number,
    leaseUntil: string,
    progress?: LogProgress,
  ): Promise<RenewResult>;
  /**
   * Cancels a job: a waiting one at once (a later delivery of it is acked without running),
   * a running one by flagging it for its worker. Null when the job does not exist.
   */
  requestCancel(jobId: string, at: string): Promise<CancelResult | null>;
  /** Records a failed attempt and moves the job to `nextState` (one transaction). */
  failAttempt(input: FailAttemptInput): Promise<Job>;
  /**
   * The commit transaction: attempt succeeded, insights stored, child events and their outbox
   * rows inserted if absent, job succeeded. Idempotent for the same job.
   */
  commitAttempt(input: CommitAttemptInput): Promise<Job>;

  // -- outbox -------------------------------------------------------------------------------
  /** Oldest unpublished entries first. */
  pendingOutbox(limit: number): Promise<OutboxEntry[]>;
  /** Marks outbox rows (by their own id) published. */
  markPublished(ids: string[]): Promise<void>;

  // -- settlements (the ion.trace.settled fan-in; see docs/pipeline.md) ---------------------
  /*
   * Every transaction that moves a job to an ended state (commitAttempt, failAttempt to
   * dead_lettered or cancelled, requestCancel, and beginAttempt completing a cancel) also
   * checks whether the job's trace has settled: no job of it still pending, running or
   * failed, and every event of it (ion.trace.settled aside) has an ordinary job for every live
   * module that subscribes to its type and existed when the event was stored. If so, it
   * records the settlement, once per correlation id (insert-if-absent); transactions ending
   * one trace's last jobs at once serialise on the trace, so the later one sees the other's.
   */
  /** The trace's settlement, open or raised; null while it has not settled. */
  getSettlement(correlationId: string): Promise<Settlement | null>;
  /**
   * Claims up to `limit` settlements not handled yet for the relay `owner` until `until`,
   * oldest first: those never claimed, whose claim ended by `now`, or already `owner`'s (a
   * relay tries again after a failure without waiting for its own claim to end). Claims
   * made at once get disjoint settlements, so one process raises each settlement while its
   * claim holds; a claim left by a process that died ends at `until`.
   */
  claimSettlements(claim: SettlementClaim): Promise<Settlement[]>;
  /**
   * In one transaction: inserts the `ion.trace.settled` event if absent, with an outbox row
   * when it was inserted, and marks its settlement (the event's correlation id) raised.
   * `created` is false when the event already existed (another process raised it first).
   */
  recordSettledEvent(event: IonEvent): Promise<{ created: boolean }>;
  /**
   * Marks an open settlement done without an event: no module subscribes to
   * `ion.trace.settled`, so the event would reach no one (the bus drops a message no
   * subscription is bound to) and its `trace.json` would only take space.
   */
  closeSettlement(correlationId: string): Promise<void>;

  // -- dead letters -------------------------------------------------------------------------
  /** Records a dead letter that has no job (malformed bus message). */
  addDeadLetter(entry: DeadLetter): Promise<void>;
  listDeadLetters(filter?: { module?: string; limit?: number }): Promise<DeadLetter[]>;
  getDeadLetter(id: string): Promise<DeadLetter | null>;
  /**
   * Redrive: in one transaction removes the dead letter, moves its job back to `pending`
   * (its attempt history kept, its failure budget reset) and writes an outbox entry that
   * targets the module's subscription only. Returns the job, or null when absent.
   */
  redriveDeadLetter(id: string): Promise<Job | null>;
  /** Removes a dead letter without redriving it. */
  discardDeadLetter(id: string): Promise<boolean>;

  // -- replays -----------------------------------------------------------------------------
  /**
   * Adds jobs to a replay (creating the replay on its first call): per target, in one
   * transaction, a `pending` job `jobIdFor(module, eventId, replayId)` and an outbox entry
   * that sends it to the module's subscription. A target whose job exists is skipped, so a
   * repeated call adds nothing twice. Returns how many jobs were created.
   */
  addReplayJobs(replay: Replay, targets: ReplayTarget[]): Promise<number>;
  /** The replay with its jobs counted by state; null when unknown. */
  getReplay(replayId: string): Promise<ReplayStatus | null>;
  /** Replays, newest first. */
  listReplays(filter?: { module?: string; limit?: number }): Promise<Replay[]>;

  // -- queries ------------------------------------------------------------------------------
  listInsights(filter?: InsightFilter): Promise<Insight[]>;
  /** Every event, job and insight of one correlation id, in creation order. */
  trace(correlationId: string): Promise<Trace>;

  // -- event queries (listEvents) --
  /**
   * Events newest first (by createdAt, then eventId), a page at a time: `nextCursor` is null
   * on the last page. A malformed cursor is a ValidationError.
   */
  listEvents(filter: EventFilter): Promise<{ events: IonEvent[]; nextCursor: string | null }>;

  // -- API tokens (only their hashes; see core/tokens.ts) ---------------------------------------
  /** Stores a new token; a second token with the same id or hash is a conflict. */
  createToken(record: TokenRecord): Promise<void>;
  /** The token with this hash, revoked or not; null when none. */
  findTokenByHash(hash: string): Promise<TokenRecord | null>;
  /** Every token, revoked ones included, oldest first. */
  listTokens(): Promise<TokenRecord[]>;
  /** Marks revoked at `at` (first revocation wins). Returns the token, or null when absent. */
  revokeToken(id: string, at: string): Promise<TokenRecord | null>;
  /** Sets the token's `lastUsedAt`. */
  touchToken(id: string, at: string): Promise<void>;
}
