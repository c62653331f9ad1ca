import type { FastifyReply, FastifyRequest } from 'fastify';
import { IonError, ValidationError } from '../../core/errors.js';
import { EVENT_TYPE } from '../../core/pipeline.js';
import { isReservedEventType, reservedTypeMessage } from '../../core/trace-settled.js';
import { errorBodySchema } from '../errors.js';

/** What the three gateway protocols (JSON, multipart, CloudEvents) share. */

/** 10 GiB: large enough for any upload Ion is meant for, small enough to stop a runaway one. */
export const DEFAULT_GATEWAY_MAX_FILE_BYTES = 10 * 1024 ** 3;
const publishedSchema = {
  type: 'object',
  properties: {
    eventId: { type: 'string' },
    correlationId: { type: 'string' },
    created: { type: 'boolean' },
  },
} as const;
export const gatewayResponses = {
  200: publishedSchema,
  201: publishedSchema,
  400: errorBodySchema,
  409: errorBodySchema,
  413: errorBodySchema,
  415: errorBodySchema,
  503: errorBodySchema,
} as const;

/** `type/subtype` of the request body, lower case, without parameters; '' when absent. */
export function mediaTypeOf(request: FastifyRequest): string {
  return (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

export function tooLarge(what: string, limitBytes: number): IonError {
  return new IonError('payload_too_large', `${what} is larger than the ${limitBytes}-byte limit`);
}

export function invalid(message: string, path: string, issue: string): ValidationError {
  return new ValidationError(message, [{ path, message: issue }]);
}

export function checkEventType(type: string, where: string): void {
  if (!EVENT_TYPE.test(type) || type.length > 200) {
    throw invalid(
      `invalid event type "${type}" in ${where}: must be 1-200 characters of dot-separated words of letters, digits, "_" or "-"`,
      where,
      'invalid event type',
    );
  }
  if (isReservedEventType(type)) {
    throw invalid(
      `invalid event type in ${where}: ${reservedTypeMessage(type)}`,
      where,
      'reserved event type',
    );
  }
}

/** A metadata value: strings as they are, numbers and booleans as their JSON text; else null. */
export function scalarText(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  if (typeof value === 'boolean') return String(value);
  return null;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function idempotencyKeyOf(request: FastifyRequest): string | undefined {
  const key = request.headers['idempotency-key'];
  if (key === undefined) return undefined;
  if (typeof key !== 'string' || key.length === 0 || key.length > 256) {
    throw invalid(
      'invalid Idempotency-Key header: give it once, 1-256 characters',
      'headers.idempotency-key',
      'must be 1-256 characters',
    );
  }
  return key;
}

/** Counts the bytes of an upload and fails it once they pass `limitBytes`. */
export async function* capped(
  source: AsyncIterable<Uint8Array>,
  limitBytes: number,
  what: string,
): AsyncGenerator<Uint8Array> {
  let size = 0;
  for await (const chunk of source) {
    size += chunk.length;
    if (size > limitBytes) throw tooLarge(what, limitBytes);
    yield chunk;
  }
}

/** The answer to a publication: 201 for a new root event, 200 for an idempotent repeat. */
export async function replyPublished(
  reply: FastifyReply,
  published: { event: { eventId: string; correlationId: string }; created: boolean },
) {
  const { event, created } = published;
  return reply
    .status(created ? 201 : 200)
    .send({ eventId: event.eventId, correlationId: event.correlationId, created });
}
