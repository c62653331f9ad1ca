import type { FastifyInstance } from 'fastify';
import type { DeadLetterSelector } from '../../app/dead-letters.js';
import { errorResponses, idParams } from '../errors.js';
import { deadLetterSchema, jobSchema } from '../schemas.js';
import type { RouteDeps } from './deps.js';

const errors = errorResponses;
/** `{ ids?, module?, all? }`: which dead letters a bulk operation acts on. */
const selectorBody = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ids: {
      type: 'array',
      maxItems: 1000,
      items: { type: 'string', minLength: 1, maxLength: 200 },
    },
    module: { type: 'string', minLength: 1, maxLength: 200 },
    all: { type: 'boolean' },
  },
} as const;

/**
 * Dead letters: list them, redrive or discard one, and redrive or discard many by a selector.
 * Scopes come from the central table in auth.ts: GET needs `read`, everything else `admin`.
 */
export function registerDeadLetterRoutes(
  app: FastifyInstance,
  deps: Pick<RouteDeps, 'control'>,
): void {
  const { deadLetters } = deps.control;

  app.get('/v1/dead-letters', {
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
        200: {
          type: 'object',
          properties: { deadLetters: { type: 'array', items: deadLetterSchema } },
        },
        ...errors,
      },
    },
    handler: async (request) => ({
      deadLetters: await deadLetters.list(request.query as { module?: string; limit?: number }),
    }),
  });
  app.post(
    '/v1/dead-letters/:id/redrive',
    {
      schema: {
        params: idParams('id'),
        response: {
          200: { type: 'object', properties: { job: { anyOf: [jobSchema, { type: 'null' }] } } },
          ...errors,
        },
      },
    },
    async (request) => ({
      job: await deadLetters.redrive((request.params as { id: string }).id),
    }),
  );
  app.delete(
    '/v1/dead-letters/:id',
    { schema: { params: idParams('id') } },
    async (request, reply) => {
      await deadLetters.discard((request.params as { id: string }).id);
      return reply.status(204).send();
    },
  );

  app.post(
    '/v1/dead-letters/redrive',
    {
      schema: {
        body: selectorBody,
        response: {
          200: {
            type: 'object',
            properties: {
              redriven: { type: 'integer' },
              jobs: { type: 'array', items: jobSchema },
            },
          },
          ...errors,
        },
      },
    },
    async (request) => deadLetters.redriveMany((request.body ?? {}) as DeadLetterSelector),
  );
  app.post(
    '/v1/dead-letters/discard',
    {
      schema: {
        body: selectorBody,
        response: {
          200: { type: 'object', properties: { discarded: { type: 'integer' } } },
          ...errors,
        },
      },
    },
    async (request) => deadLetters.discardMany((request.body ?? {}) as DeadLetterSelector),
  );
}
