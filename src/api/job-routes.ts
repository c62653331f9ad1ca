import type { FastifyInstance } from 'fastify';
import type { ReplayRequest } from '../app/replays.js';
import { JOB_STATES } from '../core/types.js';
import { errorResponses, idParams } from './errors.js';
import { jobSchema, moduleSchema } from './schemas.js';
import type { ServerDeps } from './server.js';

/**
 * Replays, job cancel and single-module create/update. Scopes come from the central table in
 * auth.ts: GET needs `read`, everything else `admin`.
 */

const errors = errorResponses;

const selectorSchema = {
  type: 'object',
  properties: {
    eventId: { type: 'string' },
    type: { type: 'string' },
    since: { type: 'string' },
    until: { type: 'string' },
  },
} as const;

const replaySchema = {
  type: 'object',
  properties: {
    replayId: { type: 'string' },
    module: { type: 'string' },
    moduleVersion: { type: ['integer', 'null'] },
    selector: selectorSchema,
    jobs: { type: 'integer' },
    createdAt: { type: 'string' },
  },
} as const;

const replayStatusSchema = {
  type: 'object',
  properties: {
    ...replaySchema.properties,
    states: {
      type: 'object',
      properties: Object.fromEntries(JOB_STATES.map((s) => [s, { type: 'integer' }])),
    },
  },
} as const;

export function registerJobRoutes(app: FastifyInstance, deps: ServerDeps): void {
  const { control } = deps;
  /** Followed logs still streaming: a server shutting down ends them instead of waiting. */
  const following = new Set<AbortController>();
  app.addHook('preClose', (done) => {
    for (const follower of following) follower.abort();
    done();
  });

  app.get('/v1/jobs/:jobId/logs', {
    schema: {
      description:
        "An attempt's log (the latest attempt by default) as text. With `follow=true` the " +
        'response streams the log live until the attempt ends (without `attempt`: until the ' +
        'job ends, following its retries).',
      params: idParams('jobId'),
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          attempt: { type: 'integer', minimum: 1 },
          follow: { type: 'boolean' },
        },
      },
    },
    handler: async (request, reply) => {
      const { jobId } = request.params as { jobId: string };
      const query = request.query as { attempt?: number; follow?: boolean };
      if (query.follow === true) {
        // Streams until the attempt (or the job) ends, the client goes away or the server stops.
        const follower = new AbortController();
        following.add(follower);
        reply.raw.once('close', () => {
          follower.abort();
          following.delete(follower);
        });
        const followed = await control.followJobLog(jobId, query.attempt, follower.signal);
        void reply
          .header('content-type', 'text/plain; charset=utf-8')
          .header('cache-control', 'no-cache')
          .header('x-ion-attempt', String(followed.attempt ?? ''));
        return reply.send(followed.stream);
      }
      const { attempt, stream } = await control.jobLog(jobId, query.attempt);
      void reply
        .header('content-type', 'text/plain; charset=utf-8')
        .header('x-ion-attempt', String(attempt.attempt));
      return reply.send(stream ?? attempt.logTail);
    },
  });

  app.post('/v1/replays', {
    schema: {
      description:
        'Runs a module again on past events: one event (`eventId`), or every event of a type ' +
        'in a time range (`type`, `since`, `until`). Each event gets a new job linked to it; ' +
        'the jobs run like any other and their child events flow downstream. `version` runs ' +
        'a stored version of the module instead of the current one; `dryRun` only counts.',
      body: {
        type: 'object',
        additionalProperties: false,
        required: ['module'],
        properties: {
          module: { type: 'string', minLength: 1, maxLength: 200 },
          version: { type: 'integer', minimum: 1 },
          eventId: { type: 'string', minLength: 1, maxLength: 200 },
          type: { type: 'string', minLength: 1, maxLength: 200 },
          since: { type: 'string', minLength: 1, maxLength: 100 },
          until: { type: 'string', minLength: 1, maxLength: 100 },
          dryRun: { type: 'boolean' },
        },
      },
      response: {
        200: {
          type: 'object',
          properties: {
            replay: replayStatusSchema,
            matched: { type: 'integer' },
            dryRun: { type: 'boolean' },
          },
        },
        201: {
          type: 'object',
          properties: {
            replay: replayStatusSchema,
            matched: { type: 'integer' },
            dryRun: { type: 'boolean' },
          },
        },
        ...errors,
      },
    },
    handler: async (request, reply) => {
      const outcome = await control.replay(request.body as ReplayRequest);
      return reply.status(outcome.dryRun ? 200 : 201).send(outcome);
    },
  });

  app.get('/v1/replays', {
    schema: {
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          module: { type: 'string' },
          limit: { type: 'integer', minimum: 1, maximum: 1000 },
        },
      },
      response: {
        200: { type: 'object', properties: { replays: { type: 'array', items: replaySchema } } },
        ...errors,
      },
    },
    handler: async (request) => ({
      replays: await control.listReplays(request.query as { module?: string; limit?: number }),
    }),
  });

  app.get(
    '/v1/replays/:replayId',
    {
      schema: {
        params: idParams('replayId'),
        response: { 200: replayStatusSchema, ...errors },
      },
    },
    async (request) => control.getReplay((request.params as { replayId: string }).replayId),
  );

  app.post(
    '/v1/jobs/:jobId/cancel',
    {
      schema: {
        description:
          'Cancels a job. A waiting job ends `cancelled` at once (`status: cancelled`); a ' +
          'running one is stopped by its worker within about a second (`status: cancelling`). ' +
          'A job that already ended answers 409.',
        params: idParams('jobId'),
        response: {
          202: {
            type: 'object',
            properties: {
              status: { type: 'string', enum: ['cancelled', 'cancelling'] },
              job: jobSchema,
            },
          },
          ...errors,
        },
      },
    },
    async (request, reply) => {
      const result = await control.cancelJob((request.params as { jobId: string }).jobId);
      return reply.status(202).send(result);
    },
  );

  app.put(
    '/v1/modules/:name',
    {
      schema: {
        description:
          'Creates or updates one module, given as one entry of a pipeline file (`name` may ' +
          'be left out; if present it must match the URL). A change makes a new version; ' +
          'other modules are untouched.',
        params: idParams('name'),
        body: { type: 'object' },
        response: {
          200: {
            type: 'object',
            properties: {
              module: moduleSchema,
              change: { type: 'string', enum: ['created', 'updated', 'unchanged'] },
            },
          },
          201: {
            type: 'object',
            properties: {
              module: moduleSchema,
              change: { type: 'string', enum: ['created', 'updated', 'unchanged'] },
            },
          },
          ...errors,
        },
      },
    },
    async (request, reply) => {
      const result = await control.putModule(
        (request.params as { name: string }).name,
        request.body,
      );
      return reply.status(result.change === 'created' ? 201 : 200).send(result);
    },
  );
}
