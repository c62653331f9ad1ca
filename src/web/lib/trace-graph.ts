import type { Insight, IonEvent, Job, JobState, Trace } from './api.js';

/**
 * Turns a trace into a laid-out tree: event → job → child events. A trace is a tree, so a
 * tidy tree layout (depth across, leaves down, parents centred on their children) is exact
 * and linear in the number of nodes; a general graph layout (ELK, dagre) would spend seconds
 * on the 2,000-event traces this must draw. A job that raised more than `fanoutLimit` events
 * is drawn as one group node with counts; each click on it draws `FANOUT_PAGE` more children
 * and leaves the rest in the group, so no click makes the page draw thousands of nodes.
 */

export const FANOUT_LIMIT = 30;
/** Children a click on a collapsed fan-out adds to the drawing: bounded work per click. */
export const FANOUT_PAGE = 250;
export const COLUMN_WIDTH = 270;
export const ROW_HEIGHT = 76;

export type TraceNode =
  | { id: string; kind: 'event'; x: number; y: number; event: IonEvent }
  | { id: string; kind: 'job'; x: number; y: number; job: Job; insights: Insight[] }
  | {
      id: string;
      kind: 'group';
      x: number;
      y: number;
      jobId: string;
      /** Children drawn already beside this group (0 while fully collapsed). */
      shown: number;
      count: number;
      types: string[];
      states: Partial<Record<JobState, number>>;
    };

export interface TraceEdge {
  id: string;
  source: string;
  target: string;
}

export interface TraceGraph {
  nodes: TraceNode[];
  edges: TraceEdge[];
  /** Events hidden inside collapsed groups. */
  hidden: number;
}

function group<T>(items: T[], key: (item: T) => string | null): Map<string, T[]> {
  const map = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    if (k === null) continue;
    const list = map.get(k);
    if (list === undefined) map.set(k, [item]);
    else list.push(item);
  }
  return map;
}

export function buildTraceGraph(
  trace: Trace,
  /** Per job id, how many of its children are drawn; absent: collapsed when over the limit. */
  expanded: ReadonlyMap<string, number> = new Map(),
  fanoutLimit = FANOUT_LIMIT,
): TraceGraph {
  const jobIds = new Set(trace.jobs.map((j) => j.jobId));
  const jobsByEvent = group(trace.jobs, (j) => j.eventId);
  const eventsByJob = group(trace.events, (e) => e.sourceJobId);
  const insightsByJob = group(trace.insights, (i) => i.jobId);
  const byTime = (a: { createdAt: string }, b: { createdAt: string }) =>
    a.createdAt.localeCompare(b.createdAt);

  const nodes: TraceNode[] = [];
  const edges: TraceEdge[] = [];
  let nextLeaf = 0;
  let hidden = 0;

  // Returns the node's y. Depth is bounded by the pipeline's length, so recursion is fine.
  const placeEvent = (event: IonEvent, depth: number): number => {
    const jobs = (jobsByEvent.get(event.eventId) ?? []).sort(byTime);
    const ys = jobs.map((job) => {
      edges.push({ id: `${event.eventId}>${job.jobId}`, source: event.eventId, target: job.jobId });
      return placeJob(job, depth + 1);
    });
    const y = ys.length === 0 ? nextLeaf++ * ROW_HEIGHT : (ys[0]! + ys.at(-1)!) / 2;
    nodes.push({ id: event.eventId, kind: 'event', x: depth * COLUMN_WIDTH, y, event });
    return y;
  };

  const placeJob = (job: Job, depth: number): number => {
    const children = (eventsByJob.get(job.jobId) ?? []).sort(byTime);
    const shown =
      children.length > fanoutLimit
        ? Math.min(children.length, expanded.get(job.jobId) ?? 0)
        : children.length;
    const ys: number[] = [];
    const rest = children.slice(shown);
    // The group of what is still hidden comes first, right beside its job, so it stays in
    // view however many children were opened below it.
    if (rest.length > 0) {
      const id = `group:${job.jobId}`;
      const states: Partial<Record<JobState, number>> = {};
      for (const child of rest)
        for (const j of jobsByEvent.get(child.eventId) ?? [])
          states[j.state] = (states[j.state] ?? 0) + 1;
      const y = nextLeaf++ * ROW_HEIGHT;
      nodes.push({
        id,
        kind: 'group',
        x: (depth + 1) * COLUMN_WIDTH,
        y,
        jobId: job.jobId,
        shown,
        count: rest.length,
        types: [...new Set(rest.map((c) => c.type))],
        states,
      });
      edges.push({ id: `${job.jobId}>${id}`, source: job.jobId, target: id });
      hidden += rest.length;
      ys.push(y);
    }
    for (const child of children.slice(0, shown)) {
      edges.push({ id: `${job.jobId}>${child.eventId}`, source: job.jobId, target: child.eventId });
      ys.push(placeEvent(child, depth + 1));
    }
    const y = ys.length === 0 ? nextLeaf++ * ROW_HEIGHT : (ys[0]! + ys.at(-1)!) / 2;
    nodes.push({
      id: job.jobId,
      kind: 'job',
      x: depth * COLUMN_WIDTH,
      y,
      job,
      insights: insightsByJob.get(job.jobId) ?? [],
    });
    return y;
  };

  const roots = trace.events
    .filter((e) => e.sourceJobId === null || !jobIds.has(e.sourceJobId))
    .sort(byTime);
  for (const root of roots) placeEvent(root, 0);
  return { nodes, edges, hidden };
}
