import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import { IonError, type ErrorCode } from '../core/errors.js';

/** The one place HTTP statuses are chosen for error codes. */
export const HTTP_STATUS: Record<ErrorCode, number> = {
  validation_failed: 400,
  not_found: 404,
  conflict: 409,
  unauthorized: 401,
  forbidden: 403,
  payload_too_large: 413,
  unsupported_media_type: 415,
  unavailable: 503,
  timeout: 504,
  internal: 500,
  module_output_invalid: 422,
  module_failed: 422,
  module_timeout: 422,
  module_oom: 422,
  image_unavailable: 503,
  executor_unavailable: 503,
  worker_lost: 503,
  job_cancelled: 409,
  message_malformed: 400,
  range_not_satisfiable: 416,
};

/** The error body every route answers with: `{ error: { code, message } }`. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; issues?: { path: string; message: string }[] };
}

export const errorBodySchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: {
        code: { type: 'string' },
        message: { type: 'string' },
        issues: {
          type: 'array',
          items: {
            type: 'object',
            properties: { path: { type: 'string' }, message: { type: 'string' } },
          },
        },
      },
    },
  },
} as const;

/**
 * The error answers a route documents in its schema (and OpenAPI): every status the one error
 * format may come with, whatever the route, bar the auth refusals auth.ts adds.
 */
export const errorResponses = {
  400: errorBodySchema,
  404: errorBodySchema,
  409: errorBodySchema,
  413: errorBodySchema,
  415: errorBodySchema,
  500: errorBodySchema,
  503: errorBodySchema,
} as const;

/** Params schema of a route with one id in its path (`/v1/jobs/:jobId`). */
export const idParams = (name: string) =>
  ({
    type: 'object',
    required: [name],
    properties: { [name]: { type: 'string', minLength: 1, maxLength: 200 } },
  }) as const;

function fromFastify(
  err: FastifyError,
): { status: number; code: ErrorCode; message: string } | null {
  if (err.validation !== undefined) {
    const where = err.validationContext ?? 'request';
    return { status: 400, code: 'validation_failed', message: `invalid ${where}: ${err.message}` };
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { status: 413, code: 'payload_too_large', message: 'request body is too large' };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { status: 415, code: 'unsupported_media_type', message: err.message };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return {
        status: 400,
        code: 'validation_failed',
        message: `invalid request body: ${err.message}`,
      };
  }
  if (
    err instanceof SyntaxError ||
    (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500)
  ) {
    const status = err.statusCode ?? 400;
    return { status, code: CODE_BY_STATUS[status] ?? 'validation_failed', message: err.message };
  }
  return null;
}

/** The code of a 4xx raised by Fastify or a plugin (static files, multipart...) by its status. */
const CODE_BY_STATUS: Partial<Record<number, ErrorCode>> = {
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  409: 'conflict',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
};

/** Fastify error handler: maps every error to the one error format; never leaks a stack. */
export function errorHandler(logger: Logger) {
  return (err: FastifyError, request: FastifyRequest, reply: FastifyReply): void => {
    let status: number;
    let body: ErrorBody;
    if (err instanceof IonError) {
      status = HTTP_STATUS[err.code];
      body = { error: { code: err.code, message: err.message } };
      if ('issues' in err && Array.isArray(err.issues) && err.issues.length > 0) {
        body.error.issues = err.issues as { path: string; message: string }[];
      }
    } else {
      const mapped = fromFastify(err);
      if (mapped !== null) {
        status = mapped.status;
        body = { error: { code: mapped.code, message: mapped.message } };
      } else {
        status = 500;
        body = { error: { code: 'internal', message: 'internal error; see the server log' } };
      }
    }
    if (status === 503 || status === 504) {
      // A backend is away: expected during outages, so one line without a stack.
      logger.warn(
        {
          code: body.error.code,
          url: request.url,
          method: request.method,
          error: body.error.message,
        },
        'request failed: backend unavailable',
      );
    } else if (status >= 500) {
      logger.error({ err, url: request.url, method: request.method }, 'request failed');
    }
    void reply.status(status).send(body);
  };
}
