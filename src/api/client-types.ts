import type { Insight, IonEvent, Job, KeyValue, ReplayStatus } from '../core/types.js';

/**
 * The JSON the v1 API answers, as the typed client sees it. These describe the wire format
 * and are declared here, not imported from the composition root (`src/app/`), so the CLI's
 * client depends only on the domain types; `client-types.test.ts` checks at compile time that
 * what the server's operations return still fits them.
 */

/** An event as the API returns it: `data` as an object, `metadata` as the ordered pairs. */
export type EventView = Omit<IonEvent, 'data'> & {
  data: Record<string, string>;
  metadata: KeyValue[];
};

export interface TraceView {
  correlationId: string;
  events: EventView[];
  jobs: Job[];
  insights: Insight[];
}

/** An insight hit of `GET /v1/insights`: the insight and a summary of its event. */
export type InsightHitView = Insight & {
  event: {
    eventId: string;
    type: string;
    files: { path: string; sha256: string; size: number; href: string }[];
  } | null;
};

/** What `POST /v1/pipelines/apply` answers: each module and what happened to it. */
export interface ApplyResult {
  modules: {
    name: string;
    version: number;
    change: 'created' | 'updated' | 'unchanged' | 'deleted';
  }[];
}

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

/** What `POST /v1/replays` answers. */
export interface ReplayOutcome {
  replay: ReplayStatus;
  /** How many events the selector matched (jobs created, unless a dry run). */
  matched: number;
  dryRun: boolean;
}

/** Which dead letters a bulk redrive or discard acts on (see docs/api.md). */
export interface DeadLetterSelector {
  ids?: string[];
  module?: string;
  all?: boolean;
}
