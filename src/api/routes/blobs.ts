import { posix } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Readable } from 'node:stream';
import { IonError } from '../../core/errors.js';
import { errorResponses } from '../errors.js';
import { detachedBody } from '../upload-body.js';
import type { RouteDeps } from './deps.js';

/**
 * Blobs: upload (streamed straight to the blob store, never buffered whole) and download,
 * with ranges and content types.
 */

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

export function registerBlobRoutes(app: FastifyInstance, deps: Pick<RouteDeps, 'control'>): void {
  const { blobs } = deps.control;

  app.put('/v1/blobs', {
    schema: {
      response: {
        201: {
          type: 'object',
          properties: { sha256: { type: 'string' }, size: { type: 'integer' } },
        },
        ...errorResponses,
      },
    },
    bodyLimit: Number.MAX_SAFE_INTEGER,
    config: { streamedUpload: true },
    handler: async (request, reply) => {
      const type = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== 'application/octet-stream') {
        throw new IonError(
          'unsupported_media_type',
          'upload blobs with Content-Type: application/octet-stream',
        );
      }
      const ref = await blobs.put(detachedBody(request.body as Readable));
      return reply.status(201).send(ref);
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
      const ref = await blobs.stat(sha256);
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
        const { stream } = await blobs.get(sha256);
        return reply.header('content-length', ref.size).send(stream);
      }
      const { stream } = await blobs.get(sha256, range);
      return reply
        .status(206)
        .header('content-range', `bytes ${range.start}-${range.end}/${ref.size}`)
        .header('content-length', range.end - range.start + 1)
        .send(stream);
    },
  });
}
