import type { FastifyInstance } from 'fastify';
import { errorResponses, idParams } from '../errors.js';
import { moduleSchema, moduleSpecProperties } from '../schemas.js';
import type { RouteDeps } from './deps.js';

/**
 * Modules: apply a pipeline, list and read modules, create or update one, delete, pause,
 * resume, and read a module's versions. Scopes come from the central table in auth.ts: GET
 * needs `read`, everything else `admin`.
 */

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

const applyResultSchema = {
  type: 'object',
  properties: {
    modules: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          name: { type: 'string' },
          version: { type: 'integer' },
          change: { type: 'string' },
        },
      },
    },
  },
} as const;

export function registerModuleRoutes(app: FastifyInstance, deps: Pick<RouteDeps, 'control'>): void {
  const { modules } = deps.control;

  app.post('/v1/pipelines/apply', {
    schema: {
      body: {
        type: 'object',
        required: ['pipeline'],
        additionalProperties: false,
        properties: { pipeline: { type: 'object' }, prune: { type: 'boolean' } },
      },
      response: { 200: applyResultSchema, ...errors },
    },
    handler: async (request) => {
      const body = request.body as { pipeline: unknown; prune?: boolean };
      return modules.apply(body.pipeline, { prune: body.prune ?? false });
    },
  });

  app.get(
    '/v1/modules',
    {
      schema: {
        response: {
          200: {
            type: 'object',
            properties: { modules: { type: 'array', items: moduleSchema } },
          },
        },
      },
    },
    async () => ({ modules: await modules.list() }),
  );
  app.get(
    '/v1/modules/:name',
    { schema: { params: idParams('name'), response: { 200: moduleSchema, ...errors } } },
    async (request) => modules.get((request.params as { name: string }).name),
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
      const result = await modules.put((request.params as { name: string }).name, request.body);
      return reply.status(result.change === 'created' ? 201 : 200).send(result);
    },
  );

  app.delete(
    '/v1/modules/:name',
    { schema: { params: nameParams, response: { 204: { type: 'null' }, ...errors } } },
    async (request, reply) => {
      await modules.delete((request.params as { name: string }).name);
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
      async (request) => modules.setPaused((request.params as { name: string }).name, paused),
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
      versions: await modules.versions((request.params as { name: string }).name),
    }),
  );
}
