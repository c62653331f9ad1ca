import type { FastifyInstance } from 'fastify';
import { SCOPES, type TokenService } from '../../core/tokens.js';
import { errorResponses } from '../errors.js';

/** API tokens: create (the value is shown once), list, revoke. */

const tokenViewSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    name: { type: 'string' },
    scopes: { type: 'array', items: { type: 'string' } },
    createdAt: { type: 'string' },
    lastUsedAt: { type: ['string', 'null'] },
    revokedAt: { type: ['string', 'null'] },
  },
} as const;

const errors = errorResponses;

/** `POST/GET/DELETE /v1/tokens` (scope `admin` by the table in auth.ts). */
export function registerTokenRoutes(app: FastifyInstance, tokens: TokenService): void {
  app.post('/v1/tokens', {
    schema: {
      body: {
        type: 'object',
        required: ['name', 'scopes'],
        additionalProperties: false,
        properties: {
          name: { type: 'string', minLength: 1, maxLength: 200 },
          scopes: {
            type: 'array',
            minItems: 1,
            items: { type: 'string', enum: [...SCOPES] },
          },
        },
      },
      response: {
        201: {
          type: 'object',
          properties: {
            token: { type: 'string', description: 'the token value; shown this once only' },
            ...tokenViewSchema.properties,
          },
        },
        ...errors,
      },
    },
    handler: async (request, reply) => {
      const body = request.body as { name: string; scopes: string[] };
      const { token, record } = await tokens.create(body);
      return reply.status(201).send({ token, ...record });
    },
  });
  app.get(
    '/v1/tokens',
    {
      schema: {
        response: {
          200: {
            type: 'object',
            properties: { tokens: { type: 'array', items: tokenViewSchema } },
          },
          ...errors,
        },
      },
    },
    async () => ({ tokens: await tokens.list() }),
  );
  app.delete(
    '/v1/tokens/:id',
    {
      schema: {
        params: {
          type: 'object',
          required: ['id'],
          properties: { id: { type: 'string', minLength: 1, maxLength: 200 } },
        },
        response: { 200: tokenViewSchema, ...errors },
      },
    },
    async (request) => tokens.revoke((request.params as { id: string }).id),
  );
}
