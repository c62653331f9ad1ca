import type { FastifyInstance } from 'fastify';
import type { InsightQuery } from '../../app/event-queries.js';
import { errorBodySchema } from '../errors.js';
import { insightSchema } from '../schemas.js';
import { fileHref } from '../views.js';
import type { RouteDeps } from './deps.js';

/** Insight queries, each hit with its event's files (download links included). */

const errors = {
  400: errorBodySchema,
  404: errorBodySchema,
  416: errorBodySchema,
  500: errorBodySchema,
  503: errorBodySchema,
};
const timeBound = { type: 'string', minLength: 1, maxLength: 64 } as const;
const filterString = { type: 'string', minLength: 1, maxLength: 500 } as const;
const limit = { type: 'integer', minimum: 1, maximum: 1000 } as const;

export function registerInsightRoutes(
  app: FastifyInstance,
  deps: Pick<RouteDeps, 'control'>,
): void {
  const { events } = deps.control;

  app.get('/v1/insights', {
    schema: {
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          module: filterString,
          key: filterString,
          value: { type: 'string', maxLength: 10000 },
          valuePrefix: { type: 'string', minLength: 1, maxLength: 10000 },
          // Repeatable: only insights of jobs that also recorded every key=value given
          // (label=car&has=colour=red: one object, one job). At most 10.
          has: {
            type: 'array',
            maxItems: 10,
            items: { type: 'string', minLength: 2, maxLength: 10200 },
          },
          correlationId: filterString,
          since: timeBound,
          until: timeBound,
          limit,
        },
      },
      response: {
        200: {
          type: 'object',
          properties: {
            insights: {
              type: 'array',
              items: {
                ...insightSchema,
                properties: {
                  ...insightSchema.properties,
                  event: {
                    type: ['object', 'null'],
                    properties: {
                      eventId: { type: 'string' },
                      type: { type: 'string' },
                      files: {
                        type: 'array',
                        items: {
                          type: 'object',
                          properties: {
                            path: { type: 'string' },
                            sha256: { type: 'string' },
                            size: { type: 'integer' },
                            href: { type: 'string' },
                          },
                        },
                      },
                    },
                  },
                },
              },
            },
          },
        },
        ...errors,
      },
    },
    handler: async (request) => {
      const hits = await events.insights(request.query as InsightQuery);
      return {
        insights: hits.map((hit) => ({
          ...hit,
          event:
            hit.event === null
              ? null
              : { ...hit.event, files: hit.event.files.map((f) => ({ ...f, href: fileHref(f) })) },
        })),
      };
    },
  });
}
