import type { FastifyInstance } from 'fastify';
import { JOB_STATES, type JobState } from '../../core/types.js';
import { errorResponses, idParams } from '../errors.js';
import { attemptSchema, jobSchema } from '../schemas.js';
import type { RouteDeps } from './deps.js';

/**
 * Jobs: list them, read one with its attempts, read or follow an attempt's log, cancel one.
 * Scopes come from the central table in auth.ts: GET needs `read`, everything else `admin`.
 */

const errors = errorResponses;

export function registerJobRoutes(app: FastifyInstance, deps: Pick<RouteDeps, 'control'>): void {
  const { jobs } = deps.control;

  app.get('/v1/jobs', {
    schema: {
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          module: { type: 'string' },
          state: { type: 'string', enum: [...JOB_STATES] },
          correlationId: { type: 'string' },
          eventId: { type: 'string' },
          replayId: { type: 'string' },
          since: { type: 'string', maxLength: 100 },
          until: { type: 'string', maxLength: 100 },
          limit: { type: 'integer', minimum: 1, maximum: 1000 },
        },
      },
      response: {
        200: { type: 'object', properties: { jobs: { type: 'array', items: jobSchema } } },
        ...errors,
      },
    },
    handler: async (request) => {
      const q = request.query as {
        module?: string;
        state?: JobState;
        correlationId?: string;
        eventId?: string;
        replayId?: string;
        since?: string;
        until?: string;
        limit?: number;
      };
      return { jobs: await jobs.list(q) };
    },
  });
  app.get(
    '/v1/jobs/:jobId',
    {
      schema: {
        params: idParams('jobId'),
        response: {
          200: {
            type: 'object',
            properties: { job: jobSchema, attempts: { type: 'array', items: attemptSchema } },
          },
          ...errors,
        },
      },
    },
    async (request) => jobs.get((request.params as { jobId: string }).jobId),
  );

  /** Followed logs still streaming: a server shutting down ends them instead of waiting. */
  const following = new Set<AbortController>();
  app.addHook('preClose', (done) => {
    for (const follower of following) follower.abort();
    done();
  });

  app.get('/v1/jobs/:jobId/logs', {
    config: { longLivedResponse: true },
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
        const followed = await jobs.followLog(jobId, query.attempt, follower.signal);
        void reply
          .header('content-type', 'text/plain; charset=utf-8')
          .header('cache-control', 'no-cache')
          .header('x-ion-attempt', String(followed.attempt ?? ''));
        return reply.send(followed.stream);
      }
      const { attempt, stream } = await jobs.log(jobId, query.attempt);
      void reply
        .header('content-type', 'text/plain; charset=utf-8')
        .header('x-ion-attempt', String(attempt.attempt));
      return reply.send(stream ?? attempt.logTail);
    },
  });

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
      const result = await jobs.cancel((request.params as { jobId: string }).jobId);
      return reply.status(202).send(result);
    },
  );
}
