import type { FastifyInstance } from 'fastify';
import type { DeadLetterSelector } from '../app/control.js';
import { errorResponses, idParams } from './errors.js';
import { jobSchema, moduleSchema, moduleSpecProperties } from './schemas.js';
import type { ServerDeps } from './server.js';

const errors = errorResponses;
const nameParams = idParams('name');

const moduleVersionSchema = {
  type: 'object',
  properties: {
    version: { type: 'integer' },
    spec: { type: 'object', properties: moduleSpecProperties },
    createdAt: { type: 'string' },
  },
} as const;

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
 * Module administration (delete, pause, resume, versions) and bulk dead-letter operations
 * (redrive and discard many). Scopes come from the central table in auth.ts: GET needs
 * `read`, everything else `admin`.
 */
export function registerAdminRoutes(app: FastifyInstance, deps: ServerDeps): void {
  const { control } = deps;

  app.delete(
    '/v1/modules/:name',
    { schema: { params: nameParams, response: { 204: { type: 'null' }, ...errors } } },
    async (request, reply) => {
      await control.deleteModule((request.params as { name: string }).name);
      return reply.status(204).send();
    },
  );
  for (const [action, paused] of [
    ['pause', true],
    ['resume', false],
  ] as const) {
    app.post(
      `/v1/modules/:name/${action}`,
      { schema: { params: nameParams, response: { 200: moduleSchema, ...errors } } },
      async (request) => control.setModulePaused((request.params as { name: string }).name, paused),
    );
  }
  app.get(
    '/v1/modules/:name/versions',
    {
      schema: {
        params: nameParams,
        response: {
          200: {
            type: 'object',
            properties: { versions: { type: 'array', items: moduleVersionSchema } },
          },
          ...errors,
        },
      },
    },
    async (request) => ({
      versions: await control.listModuleVersions((request.params as { name: string }).name),
    }),
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
    async (request) => control.redriveMany((request.body ?? {}) as DeadLetterSelector),
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
    async (request) => control.discardMany((request.body ?? {}) as DeadLetterSelector),
  );
}
