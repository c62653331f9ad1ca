import type { FastifyInstance } from 'fastify';
import { ValidationError } from '../../core/errors.js';
import { JOB_STATES, type Job, type JobState } from '../../core/types.js';
import { errorResponses } from '../errors.js';
import { failureGroups } from '../failure-groups.js';
import { jobSchema } from '../schemas.js';
import type { RouteDeps } from './deps.js';

/**
 * Routes the web dashboard needs that the rest of the API lacks: a cursor-paged job list
 * (with an insight filter), per-module job counts for the pipeline graph, and failures
 * grouped by module, failure kind and a fingerprint of the reason, with one action per group.
 * They read through the control layer only, so every store adapter serves them.
 */

/** Counts stop here: the pipeline page shows "1000+" rather than scanning a huge table. */
export const COUNT_CAP = 1000;

export type Deps = Pick<RouteDeps, 'control'>;

interface JobsQuery {
  module?: string;
  state?: JobState;
  correlationId?: string;
  since?: string;
  until?: string;
  insightKey?: string;
  insightValue?: string;
  limit?: number;
  cursor?: string;
}

/** The cursor of a job page: the last job's `updatedAt` and how many jobs at it were shown. */
type JobCursor = { kind: 'time'; at: string; skip: number } | { kind: 'insight'; offset: number };

export function encodeJobCursor(cursor: JobCursor): string {
  const raw = cursor.kind === 'time' ? ['t', cursor.at, cursor.skip] : ['i', cursor.offset];
  return Buffer.from(JSON.stringify(raw), 'utf8').toString('base64url');
}

export function decodeJobCursor(cursor: string): JobCursor {
  try {
    if (!/^[A-Za-z0-9_-]+$/.test(cursor)) throw new Error('not base64url');
    const raw: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(raw)) {
      const [kind, a, b] = raw as unknown[];
      if (kind === 't' && typeof a === 'string' && !Number.isNaN(Date.parse(a))) {
        if (Number.isInteger(b) && (b as number) >= 0)
          return { kind: 'time', at: a, skip: b as number };
      }
      if (kind === 'i' && Number.isInteger(a) && (a as number) >= 0)
        return { kind: 'insight', offset: a as number };
    }
  } catch {
    // fall through to the one error
  }
  throw new ValidationError('invalid cursor: pass the nextCursor of a previous page', [
    { path: 'cursor', message: 'invalid cursor' },
  ]);
}

async function jobsPage(
  deps: Deps,
  q: JobsQuery,
): Promise<{ jobs: Job[]; nextCursor: string | null }> {
  const limit = q.limit ?? 100;
  const cursor = q.cursor === undefined ? undefined : decodeJobCursor(q.cursor);
  if (q.insightKey !== undefined) {
    if (cursor !== undefined && cursor.kind !== 'insight') decodeJobCursor('!');
    return insightJobsPage(deps, q, limit, cursor?.kind === 'insight' ? cursor.offset : 0);
  }
  if (q.insightValue !== undefined)
    throw new ValidationError('insightValue needs insightKey', [
      { path: 'insightValue', message: 'give insightKey too' },
    ]);
  if (cursor !== undefined && cursor.kind !== 'time') decodeJobCursor('!');
  const filter = {
    ...(q.module === undefined ? {} : { module: q.module }),
    ...(q.state === undefined ? {} : { state: q.state }),
    ...(q.correlationId === undefined ? {} : { correlationId: q.correlationId }),
    ...(q.since === undefined ? {} : { since: q.since }),
  };
  let until = q.until;
  let skip = 0;
  if (cursor?.kind === 'time') {
    // Read from the last job's timestamp (inclusive: one millisecond past it), then drop
    // what the previous pages already showed: jobs at that instant come in a stable order.
    const after = new Date(Date.parse(cursor.at) + 1).toISOString();
    until = until === undefined || after < until ? after : until;
    skip = cursor.skip;
  }
  const fetch = Math.min(1000, limit + skip + 1);
  const rows = await deps.control.listJobs({
    ...filter,
    ...(until === undefined ? {} : { until }),
    limit: fetch,
  });
  let dropped = 0;
  const fresh = rows.filter((job) => {
    if (cursor?.kind !== 'time') return true;
    if (job.updatedAt > cursor.at) return false;
    if (job.updatedAt === cursor.at && dropped < skip) {
      dropped++;
      return false;
    }
    return true;
  });
  const jobs = fresh.slice(0, limit);
  const more = fresh.length > limit || rows.length === fetch;
  const last = jobs.at(-1);
  if (!more || last === undefined) return { jobs, nextCursor: null };
  let atLast = jobs.filter((job) => job.updatedAt === last.updatedAt).length;
  if (cursor?.kind === 'time' && cursor.at === last.updatedAt) atLast += skip;
  return { jobs, nextCursor: encodeJobCursor({ kind: 'time', at: last.updatedAt, skip: atLast }) };
}

/** Jobs with an insight (key, optionally value): paged through the insight hits. */
async function insightJobsPage(
  deps: Deps,
  q: JobsQuery,
  limit: number,
  offset: number,
): Promise<{ jobs: Job[]; nextCursor: string | null }> {
  const hits = await deps.control.queryInsights({
    key: q.insightKey!,
    ...(q.insightValue === undefined ? {} : { value: q.insightValue }),
    ...(q.module === undefined ? {} : { module: q.module }),
    ...(q.correlationId === undefined ? {} : { correlationId: q.correlationId }),
    limit: 1000,
  });
  const ids = [...new Set(hits.map((hit) => hit.jobId))];
  const jobs: Job[] = [];
  let i = offset;
  for (; i < ids.length && jobs.length < limit; i++) {
    const { job } = await deps.control.getJob(ids[i]!);
    if (q.state !== undefined && job.state !== q.state) continue;
    if (q.since !== undefined && job.updatedAt < q.since) continue;
    if (q.until !== undefined && job.updatedAt >= q.until) continue;
    jobs.push(job);
  }
  return {
    jobs,
    nextCursor: i < ids.length ? encodeJobCursor({ kind: 'insight', offset: i }) : null,
  };
}

const groupSchema = {
  type: 'object',
  properties: {
    module: { type: 'string' },
    fingerprint: { type: 'string' },
    kind: { type: ['string', 'null'] },
    reason: { type: 'string' },
    logLine: { type: 'string' },
    count: { type: 'integer' },
    states: {
      type: 'object',
      properties: { failed: { type: 'integer' }, dead_lettered: { type: 'integer' } },
    },
    firstSeen: { type: 'string' },
    lastSeen: { type: 'string' },
    jobIds: { type: 'array', items: { type: 'string' } },
  },
};

export function registerDashboardRoutes(app: FastifyInstance, deps: Deps): void {
  app.get('/v1/dashboard/jobs', {
    schema: {
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          module: { type: 'string' },
          state: { type: 'string', enum: [...JOB_STATES] },
          correlationId: { type: 'string' },
          since: { type: 'string', maxLength: 100 },
          until: { type: 'string', maxLength: 100 },
          insightKey: { type: 'string', minLength: 1 },
          insightValue: { type: 'string' },
          limit: { type: 'integer', minimum: 1, maximum: 500 },
          cursor: { type: 'string', maxLength: 500 },
        },
      },
      response: {
        200: {
          type: 'object',
          properties: {
            jobs: { type: 'array', items: jobSchema },
            nextCursor: { type: ['string', 'null'] },
          },
        },
        ...errorResponses,
      },
    },
    handler: async (request) => jobsPage(deps, request.query as JobsQuery),
  });

  app.get('/v1/dashboard/modules', {
    schema: {
      response: {
        200: {
          type: 'object',
          properties: {
            cap: { type: 'integer' },
            counts: {
              type: 'object',
              additionalProperties: {
                type: 'object',
                additionalProperties: { type: 'integer' },
              },
            },
          },
        },
      },
    },
    handler: async () => {
      const modules = await deps.control.listModules();
      const states = ['pending', 'running', 'failed', 'dead_lettered'] as const;
      const counts: Record<string, Record<string, number>> = {};
      await Promise.all(
        modules.map(async (m) => {
          const row: Record<string, number> = {};
          for (const state of states) {
            const jobs = await deps.control.listJobs({
              module: m.name,
              state,
              limit: COUNT_CAP,
            });
            row[state] = jobs.length;
          }
          counts[m.name] = row;
        }),
      );
      return { cap: COUNT_CAP, counts };
    },
  });

  app.get('/v1/dashboard/failures', {
    schema: {
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: { module: { type: 'string' } },
      },
      response: {
        200: { type: 'object', properties: { groups: { type: 'array', items: groupSchema } } },
        ...errorResponses,
      },
    },
    handler: async (request) => ({
      groups: await failureGroups(deps, (request.query as { module?: string }).module),
    }),
  });

  app.post('/v1/dashboard/failures/act', {
    schema: {
      body: {
        type: 'object',
        required: ['module', 'fingerprint', 'action'],
        additionalProperties: false,
        properties: {
          module: { type: 'string', minLength: 1 },
          fingerprint: { type: 'string', minLength: 1 },
          action: { type: 'string', enum: ['redrive', 'replay'] },
          dryRun: { type: 'boolean' },
        },
      },
      response: {
        200: {
          type: 'object',
          properties: {
            action: { type: 'string' },
            dryRun: { type: 'boolean' },
            jobIds: { type: 'array', items: { type: 'string' } },
            touched: { type: 'integer' },
          },
        },
        ...errorResponses,
      },
    },
    handler: async (request) => {
      const body = request.body as {
        module: string;
        fingerprint: string;
        action: 'redrive' | 'replay';
        dryRun?: boolean;
      };
      const groups = await failureGroups(deps, body.module);
      const group = groups.find((g) => g.fingerprint === body.fingerprint);
      const jobs = group === undefined ? [] : await jobsOf(deps, group.jobIds);
      // Redrive acts on dead letters; a failed job still has a retry due and needs none.
      // Replay runs the module again on each job's event.
      const selected =
        body.action === 'redrive' ? jobs.filter((job) => job.state === 'dead_lettered') : jobs;
      const jobIds = selected.map((job) => job.jobId);
      if (body.dryRun === true || jobIds.length === 0)
        return { action: body.action, dryRun: body.dryRun === true, jobIds, touched: 0 };
      let touched = 0;
      if (body.action === 'redrive') {
        touched = (await deps.control.redriveMany({ ids: jobIds, module: body.module })).redriven;
      } else {
        for (const job of selected) {
          await deps.control.replay({ module: job.module, eventId: job.eventId });
          touched++;
        }
      }
      return { action: body.action, dryRun: false, jobIds, touched };
    },
  });
}

async function jobsOf(deps: Deps, ids: string[]): Promise<Job[]> {
  const jobs: Job[] = [];
  for (const id of ids) jobs.push((await deps.control.getJob(id)).job);
  return jobs;
}
