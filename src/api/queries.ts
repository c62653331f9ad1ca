import { posix } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { IonError } from '../core/errors.js';
import type { FileRef, IonEvent } from '../core/types.js';
import { errorBodySchema } from './errors.js';
import { eventSchema, insightSchema } from './schemas.js';
import type { ServerDeps } from './server.js';

/**
 * Query routes: the event list (filters, cursor pages), one event's lineage, insight queries
 * with their events' files, and blob downloads with ranges and content types.
 */

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

function eventView(event: IonEvent) {
  return {
    ...event,
    data: Object.fromEntries(event.data.map((kv) => [kv.key, kv.value])),
    metadata: event.data,
  };
}

/** The download URL of a file: its blob, named so the content type and file name follow. */
export function fileHref(file: FileRef): string {
  return `/v1/blobs/${file.sha256}?name=${encodeURIComponent(posix.basename(file.path))}`;
}

const CONTENT_TYPES: Record<string, string> = {
  txt: 'text/plain; charset=utf-8',
  json: 'application/json',
  csv: 'text/csv; charset=utf-8',
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  pdf: 'application/pdf',
  html: 'text/html; charset=utf-8',
};

/** The content type of a file name, from its extension; `application/octet-stream` if unknown. */
export function contentTypeFor(name: string | undefined): string {
  const dot = name?.lastIndexOf('.') ?? -1;
  if (name === undefined || dot < 0) return 'application/octet-stream';
  return CONTENT_TYPES[name.slice(dot + 1).toLowerCase()] ?? 'application/octet-stream';
}

/**
 * Parses a `Range` header against a blob of `size` bytes. Only one `bytes` range is served;
 * a header that is absent, malformed or asks for several ranges is ignored (the whole blob,
 * as RFC 9110 allows). `unsatisfiable` when the range starts past the end.
 */
export function parseRange(
  header: string | undefined,
  size: number,
): { start: number; end: number } | 'unsatisfiable' | null {
  if (header === undefined) return null;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (m === null) return null;
  const [, a = '', b = ''] = m;
  if (a === '' && b === '') return null;
  if (a === '') {
    const n = Number(b);
    if (n === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(a);
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  if (b !== '' && Number(b) < start) return null;
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

/** `Content-Disposition` for a download named `name` (quoted ASCII fallback and UTF-8 form). */
function disposition(name: string): string {
  const base = posix.basename(name.replace(/\\/g, '/'));
  const ascii = base.replace(/[^\x20-\x7e]|["\\]/g, '_');
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(base)}`;
}

export function registerQueryRoutes(app: FastifyInstance, deps: ServerDeps): void {
  const { control } = deps;

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
          limit,
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
        ...errors,
      },
    },
    handler: async (request) => {
      const page = await control.listEvents(
        request.query as Parameters<typeof control.listEvents>[0],
      );
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
        ...errors,
      },
    },
    handler: async (request) => {
      const result = await control.lineage((request.params as { eventId: string }).eventId);
      return {
        event: eventView(result.event),
        ancestors: result.ancestors.map(eventView),
        descendants: result.descendants.map(eventView),
      };
    },
  });

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
      const hits = await control.queryInsights(
        request.query as Parameters<typeof control.queryInsights>[0],
      );
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

  app.get('/v1/blobs/:sha256', {
    schema: {
      params: {
        type: 'object',
        properties: { sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' } },
      },
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          type: {
            type: 'string',
            maxLength: 200,
            pattern:
              '^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(; ?[A-Za-z0-9_.-]+=[A-Za-z0-9_.-]+)?$',
          },
          name: { type: 'string', minLength: 1, maxLength: 255 },
        },
      },
    },
    handler: async (request, reply) => {
      const { sha256 } = request.params as { sha256: string };
      const { type, name } = request.query as { type?: string; name?: string };
      const ref = await control.statBlob(sha256);
      const range = parseRange(request.headers.range, ref.size);
      void reply.header('accept-ranges', 'bytes');
      if (range === 'unsatisfiable') {
        void reply.header('content-range', `bytes */${ref.size}`);
        throw new IonError(
          'range_not_satisfiable',
          `range "${request.headers.range}" lies outside blob ${sha256} (${ref.size} bytes)`,
        );
      }
      void reply.header('content-type', type ?? contentTypeFor(name));
      if (name !== undefined) void reply.header('content-disposition', disposition(name));
      if (range === null) {
        const { stream } = await control.getBlob(sha256);
        return reply.header('content-length', ref.size).send(stream);
      }
      const { stream } = await control.getBlob(sha256, range);
      return reply
        .status(206)
        .header('content-range', `bytes ${range.start}-${range.end}/${ref.size}`)
        .header('content-length', range.end - range.start + 1)
        .send(stream);
    },
  });
}
