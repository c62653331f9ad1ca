import { NotFoundError, ValidationError } from '../core/errors.js';
import { newId } from '../core/ids.js';
import { nowIso, yieldToEventLoop } from '../core/time.js';
import {
  jobStateCounts,
  type ModuleSpec,
  type Replay,
  type ReplaySelector,
  type ReplayStatus,
} from '../core/types.js';
import type { DocumentStore } from '../store/document-store.js';
import { checkLimit, type ControlDeps } from './control-deps.js';
import { isoTime } from './event-queries.js';

/** What `POST /v1/replays` asks for: one event, or every event of a type in a time range. */
export interface ReplayRequest {
  module: string;
  /** The module version to run; the current one when absent. */
  version?: number;
  eventId?: string;
  type?: string;
  since?: string;
  until?: string;
  /** Count the events it would replay, create nothing. */
  dryRun?: boolean;
}

export interface ReplayOutcome {
  replay: ReplayStatus;
  /** How many events the selector matched (jobs created, unless a dry run). */
  matched: number;
  dryRun: boolean;
}

/** Events read (and jobs created, in one transaction) per page of a backfill. */
const REPLAY_PAGE = 500;

/** The spec a replay runs: the asked-for version's, or the current one. */
async function replaySpec(
  store: DocumentStore,
  module: string,
  version: number | undefined,
): Promise<{ spec: ModuleSpec; version: number }> {
  const current = await store.getModule(module);
  if (current === null) throw new NotFoundError(`module "${module}" does not exist`);
  if (version === undefined || version === current.version)
    return { spec: current, version: current.version };
  const stored = (await store.listModuleVersions(module)).find((v) => v.version === version);
  if (stored === undefined) throw new NotFoundError(`module "${module}" has no version ${version}`);
  return { spec: stored.spec, version };
}

function selectorOf(request: ReplayRequest): ReplaySelector {
  const { eventId, type } = request;
  if ((eventId === undefined) === (type === undefined))
    throw new ValidationError('say what to replay: either eventId, or type (with since/until)', [
      {
        path: eventId === undefined ? 'type' : 'eventId',
        message: 'give exactly one of eventId and type',
      },
    ]);
  if (eventId !== undefined) {
    if (request.since !== undefined || request.until !== undefined)
      throw new ValidationError('since and until go with type, not with eventId', [
        { path: request.since === undefined ? 'until' : 'since', message: 'only with type' },
      ]);
    return { eventId };
  }
  const since = isoTime('since', request.since);
  const until = isoTime('until', request.until);
  if (since !== undefined && until !== undefined && since >= until)
    throw new ValidationError(`since (${since}) must be before until (${until})`, [
      { path: 'until', message: 'must be after since' },
    ]);
  return {
    type: type!,
    ...(since === undefined ? {} : { since }),
    ...(until === undefined ? {} : { until }),
  };
}

function subscribesCheck(spec: ModuleSpec, version: number, type: string): void {
  if (!spec.subscribes.includes(type))
    throw new ValidationError(
      `module "${spec.name}" (version ${version}) does not subscribe to "${type}" (it subscribes to ${spec.subscribes.join(', ')})`,
      [{ path: 'type', message: 'not an event type the module subscribes to' }],
    );
}

/**
 * Runs a module again on past events. Each selected event gets a new job, linked to the
 * event (and to the module's ordinary job on it), whose child events are new events that
 * flow downstream like any other. A backfill pages through the matching events, creating
 * each page's jobs in one transaction, so its jobs start while later pages are read.
 */
export async function startReplay(
  store: DocumentStore,
  request: ReplayRequest,
  onJobsCreated: () => void,
): Promise<ReplayOutcome> {
  const selector = selectorOf(request);
  const { spec, version } = await replaySpec(store, request.module, request.version);
  const replay: Replay = {
    replayId: newId(),
    module: spec.name,
    moduleVersion: request.version === undefined ? null : version,
    selector,
    jobs: 0,
    createdAt: nowIso(),
  };
  const dryRun = request.dryRun === true;
  let matched = 0;
  if ('eventId' in selector) {
    const event = await store.getEvent(selector.eventId);
    if (event === null) throw new NotFoundError(`event ${selector.eventId} does not exist`);
    subscribesCheck(spec, version, event.type);
    matched = 1;
    if (!dryRun) await store.addReplayJobs(replay, [event]);
  } else {
    subscribesCheck(spec, version, selector.type);
    let cursor: string | undefined;
    do {
      const page = await store.listEvents({
        type: selector.type,
        ...(selector.since === undefined ? {} : { since: selector.since }),
        ...(selector.until === undefined ? {} : { until: selector.until }),
        limit: REPLAY_PAGE,
        ...(cursor === undefined ? {} : { cursor }),
      });
      matched += page.events.length;
      if (!dryRun && page.events.length > 0) {
        await store.addReplayJobs(replay, page.events);
        onJobsCreated();
      }
      cursor = page.nextCursor ?? undefined;
      // Between pages, let the API, running jobs and their lease renewals have their turn.
      await yieldToEventLoop();
    } while (cursor !== undefined);
    // A replay that matched nothing is still recorded, so it can be looked up like any other.
    if (!dryRun && matched === 0) await store.addReplayJobs(replay, []);
  }
  if (dryRun) {
    return { replay: { ...replay, states: jobStateCounts() }, matched, dryRun };
  }
  onJobsCreated();
  const status = await store.getReplay(replay.replayId);
  if (status === null) throw new NotFoundError(`replay ${replay.replayId} vanished`);
  return { replay: status, matched, dryRun };
}

export async function getReplay(store: DocumentStore, replayId: string): Promise<ReplayStatus> {
  const replay = await store.getReplay(replayId);
  if (replay === null) throw new NotFoundError(`replay ${replayId} does not exist`);
  return replay;
}

/** The replay operations of the management API: start one, look one up, list them. */
export class Replays {
  constructor(private readonly deps: Pick<ControlDeps, 'store' | 'onPublished'>) {}

  /** Runs a module again on past events (see {@link startReplay}). */
  start(request: ReplayRequest): Promise<ReplayOutcome> {
    return startReplay(this.deps.store, request, () => this.deps.onPublished?.());
  }

  get(replayId: string): Promise<ReplayStatus> {
    return getReplay(this.deps.store, replayId);
  }

  list(filter: { module?: string; limit?: number }): Promise<Replay[]> {
    checkLimit(filter.limit);
    return this.deps.store.listReplays(filter);
  }
}
