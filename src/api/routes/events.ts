import type { FastifyInstance } from 'fastify';
import type { EventFilter } from '../../store/document-store.js';
import { errorBodySchema, errorResponses, idParams } from '../errors.js';
import { eventSchema, publishBodySchema, traceSchema } from '../schemas.js';
import { eventView } from '../views.js';
import type { RouteDeps } from './deps.js';

/**
 * Events: publish a root event, read one, list them (filters, cursor pages), one event's
 * lineage, and the trace of a correlation id.
 */

const errors = errorResponses;
const queryErrors = {
  400: errorBodySchema,
  404: errorBodySchema,
  416: errorBodySchema,
  500: errorBodySchema,
  503: errorBodySchema,
};
const timeBound = { type: 'string', minLength: 1, maxLength: 64 } as const;
const filterString = { type: 'string', minLength: 1, maxLength: 500 } as const;
const publishedSchema = {
  type: 'object',
  properties: {
    eventId: { type: 'string' },
    correlationId: { type: 'string' },
    created: { type: 'boolean' },
  },
} as const;

export function registerEventRoutes(app: FastifyInstance, deps: Pick<RouteDeps, 'control'>): void {
  const { events } = deps.control;

  app.post('/v1/events', {
    schema: {
      body: publishBodySchema,
      headers: {
        type: 'object',
        properties: { 'idempotency-key': { type: 'string', minLength: 1, maxLength: 256 } },
      },
      response: { 200: publishedSchema, 201: publishedSchema, ...errors },
    },
    handler: async (request, reply) => {
      const body = request.body as {
        type: string;
        data?: Record<string, string> | { key: string; value: string }[];
        files?: { path: string; sha256: string }[];
        idempotencyKey?: string;
      };
      const key = body.idempotencyKey ?? (request.headers['idempotency-key'] as string | undefined);
      const { event, created } = await events.publish({
        ...body,
        ...(key === undefined ? {} : { idempotencyKey: key }),
      });
      return reply
        .status(created ? 201 : 200)
        .send({ eventId: event.eventId, correlationId: event.correlationId, created });
    },
  });

  app.get(
    '/v1/events/:eventId',
    { schema: { params: idParams('eventId'), response: { 200: eventSchema, ...errors } } },
    async (request) => eventView(await events.get((request.params as { eventId: string }).eventId)),
  );

  app.get('/v1/events', {
    schema: {
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          type: filterString,
          source: filterString,
          correlationId: filterString,
          since: timeBound,
          until: timeBound,
          limit: { type: 'integer', minimum: 1, maximum: 1000 },
          cursor: { type: 'string', minLength: 1, maxLength: 1000 },
        },
      },
      response: {
        200: {
          type: 'object',
          properties: {
            events: { type: 'array', items: eventSchema },
            nextCursor: { type: ['string', 'null'] },
          },
        },
        ...queryErrors,
      },
    },
    handler: async (request) => {
      const page = await events.list(request.query as EventFilter);
      return { events: page.events.map(eventView), nextCursor: page.nextCursor };
    },
  });

  app.get('/v1/events/:eventId/lineage', {
    schema: {
      params: {
        type: 'object',
        required: ['eventId'],
        properties: { eventId: { type: 'string', minLength: 1, maxLength: 200 } },
      },
      response: {
        200: {
          type: 'object',
          properties: {
            event: eventSchema,
            ancestors: { type: 'array', items: eventSchema },
            descendants: { type: 'array', items: eventSchema },
          },
        },
        ...queryErrors,
      },
    },
    handler: async (request) => {
      const result = await events.lineage((request.params as { eventId: string }).eventId);
      return {
        event: eventView(result.event),
        ancestors: result.ancestors.map(eventView),
        descendants: result.descendants.map(eventView),
      };
    },
  });

  app.get(
    '/v1/traces/:correlationId',
    { schema: { params: idParams('correlationId'), response: { 200: traceSchema, ...errors } } },
    async (request) => {
      const trace = await events.trace((request.params as { correlationId: string }).correlationId);
      return { ...trace, events: trace.events.map(eventView) };
    },
  );
}
