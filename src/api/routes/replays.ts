import type { FastifyInstance } from 'fastify';
import type { ReplayRequest } from '../../app/replays.js';
import { JOB_STATES } from '../../core/types.js';
import { errorResponses, idParams } from '../errors.js';
import type { RouteDeps } from './deps.js';

/**
 * Replays: run a module again on past events, list replays, read one with its jobs' states.
 * Scopes come from the central table in auth.ts: GET needs `read`, everything else `admin`.
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

export function registerReplayRoutes(app: FastifyInstance, deps: Pick<RouteDeps, 'control'>): void {
  const { replays } = deps.control;

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
      const outcome = await replays.start(request.body as ReplayRequest);
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
      replays: await replays.list(request.query as { module?: string; limit?: number }),
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
    async (request) => replays.get((request.params as { replayId: string }).replayId),
  );
}
