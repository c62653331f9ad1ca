import Fastify, { LogController, type FastifyInstance, type FastifyReply } from 'fastify';
import { installOpenApi } from './openapi.js';
import { installAuth, type AuthDeps } from './auth.js';
import { registerGateway } from './gateway.js';
import { registerOps } from './ops.js';
import { registerQueryRoutes } from './queries.js';
import { registerLiveRoutes } from './live.js';
import { registerAdminRoutes } from './admin-routes.js';
import { registerJobRoutes } from './job-routes.js';
import { registerDashboardRoutes } from './dashboard-routes.js';
import { registerUiRoutes } from './ui-static.js';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Control } from '../app/control.js';
import { JOB_STATES, type IonEvent, type JobState } from '../core/types.js';
import { errorHandler, errorResponses, idParams } from './errors.js';
import {
  attemptSchema,
  deadLetterSchema,
  eventSchema,
  jobSchema,
  moduleSchema,
  publishBodySchema,
  traceSchema,
} from './schemas.js';
import { IonError } from '../core/errors.js';

export interface ServerDeps {
  control: Control;
  logger: Logger;
  bodyLimitBytes?: number;
  /** Token checks and the token routes; without it the API has neither. */
  auth?: AuthDeps;
  /** PEM certificate and key: the API serves HTTPS only (see config/tls.ts). */
  https?: { cert: Buffer; key: Buffer };
  /** The built dashboard served at /ui; default `dist/web` of this package. */
  uiDir?: string;
}

const errors = errorResponses;

/** The API's view of an event: metadata both as an ordered list and as an object. */
function eventView(event: IonEvent) {
  return {
    ...event,
    data: Object.fromEntries(event.data.map((kv) => [kv.key, kv.value])),
    metadata: event.data,
  };
}

/**
 * Builds the HTTP API without listening, so tests call `app.inject()` and the composition
 * root decides where to listen. All routes live under `/v1`.
 */
export function buildServer(deps: ServerDeps) {
  const { control } = deps;
  const app = Fastify({
    // Typed as plain HTTP either way: the instance's API is the same over TLS.
    ...(deps.https === undefined ? {} : ({ https: deps.https } as object)),
    loggerInstance: deps.logger,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: deps.bodyLimitBytes ?? 1024 * 1024,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: false } },
    routerOptions: { maxParamLength: 500 },
    // Errors raised before routing (a malformed URL) get the one error format too.
    frameworkErrors: (error, _request, reply) => {
      void (reply as FastifyReply).status(400).send({
        error: { code: 'validation_failed', message: `invalid request: ${error.message}` },
      });
    },
  });
  app.setErrorHandler(errorHandler(deps.logger));
  app.setNotFoundHandler((request, reply) => {
    void reply
      .status(404)
      .send({ error: { code: 'not_found', message: `no route ${request.method} ${request.url}` } });
  });
  installOpenApi(app as unknown as FastifyInstance);
  // Blob uploads stream straight through to the blob store: never buffered whole.
  app.addContentTypeParser('application/octet-stream', (_request, payload, done) =>
    done(null, payload),
  );

  // Routes live in a plugin registered after the OpenAPI plugin, so it sees every one;
  // the error and not-found handlers above are inherited.
  void app.register((app, _opts, done) => {
    installAuth(app, deps.auth);

    app.get('/healthz', () => ({ status: 'ok' }));

    app.post('/v1/pipelines/apply', {
      schema: {
        body: {
          type: 'object',
          required: ['pipeline'],
          additionalProperties: false,
          properties: { pipeline: { type: 'object' }, prune: { type: 'boolean' } },
        },
        response: {
          200: {
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
          },
          ...errors,
        },
      },
      handler: async (request) => {
        const body = request.body as { pipeline: unknown; prune?: boolean };
        return control.applyPipeline(body.pipeline, { prune: body.prune ?? false });
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
      async () => ({
        modules: await control.listModules(),
      }),
    );
    app.get(
      '/v1/modules/:name',
      { schema: { params: idParams('name'), response: { 200: moduleSchema, ...errors } } },
      async (request) => control.getModule((request.params as { name: string }).name),
    );

    app.put('/v1/blobs', {
      schema: {
        response: {
          201: {
            type: 'object',
            properties: { sha256: { type: 'string' }, size: { type: 'integer' } },
          },
          ...errors,
        },
      },
      bodyLimit: Number.MAX_SAFE_INTEGER,
      handler: async (request, reply) => {
        const type = (request.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
        if (type !== 'application/octet-stream') {
          throw new IonError(
            'unsupported_media_type',
            'upload blobs with Content-Type: application/octet-stream',
          );
        }
        const ref = await control.putBlob(request.body as Readable);
        return reply.status(201).send(ref);
      },
    });
    // GET /v1/blobs/:sha256 (ranges, content types) lives in queries.ts.

    app.post('/v1/events', {
      schema: {
        body: publishBodySchema,
        headers: {
          type: 'object',
          properties: { 'idempotency-key': { type: 'string', minLength: 1, maxLength: 256 } },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              eventId: { type: 'string' },
              correlationId: { type: 'string' },
              created: { type: 'boolean' },
            },
          },
          201: {
            type: 'object',
            properties: {
              eventId: { type: 'string' },
              correlationId: { type: 'string' },
              created: { type: 'boolean' },
            },
          },
          ...errors,
        },
      },
      handler: async (request, reply) => {
        const body = request.body as {
          type: string;
          data?: Record<string, string> | { key: string; value: string }[];
          files?: { path: string; sha256: string }[];
          idempotencyKey?: string;
        };
        const key =
          body.idempotencyKey ?? (request.headers['idempotency-key'] as string | undefined);
        const { event, created } = await control.publish({
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
      async (request) =>
        eventView(await control.getEvent((request.params as { eventId: string }).eventId)),
    );

    app.get(
      '/v1/traces/:correlationId',
      { schema: { params: idParams('correlationId'), response: { 200: traceSchema, ...errors } } },
      async (request) => {
        const trace = await control.trace(
          (request.params as { correlationId: string }).correlationId,
        );
        return { ...trace, events: trace.events.map(eventView) };
      },
    );

    app.get('/v1/jobs', {
      schema: {
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            module: { type: 'string' },
            state: { type: 'string', enum: [...JOB_STATES] },
            correlationId: { type: 'string' },
            eventId: { type: 'string' },
            replayId: { type: 'string' },
            since: { type: 'string', maxLength: 100 },
            until: { type: 'string', maxLength: 100 },
            limit: { type: 'integer', minimum: 1, maximum: 1000 },
          },
        },
        response: {
          200: { type: 'object', properties: { jobs: { type: 'array', items: jobSchema } } },
          ...errors,
        },
      },
      handler: async (request) => {
        const q = request.query as {
          module?: string;
          state?: JobState;
          correlationId?: string;
          eventId?: string;
          replayId?: string;
          since?: string;
          until?: string;
          limit?: number;
        };
        return { jobs: await control.listJobs(q) };
      },
    });
    app.get(
      '/v1/jobs/:jobId',
      {
        schema: {
          params: idParams('jobId'),
          response: {
            200: {
              type: 'object',
              properties: { job: jobSchema, attempts: { type: 'array', items: attemptSchema } },
            },
            ...errors,
          },
        },
      },
      async (request) => control.getJob((request.params as { jobId: string }).jobId),
    );
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
        deadLetters: await control.listDeadLetters(
          request.query as { module?: string; limit?: number },
        ),
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
        job: await control.redrive((request.params as { id: string }).id),
      }),
    );
    app.delete(
      '/v1/dead-letters/:id',
      { schema: { params: idParams('id') } },
      async (request, reply) => {
        await control.discard((request.params as { id: string }).id);
        return reply.status(204).send();
      },
    );

    registerGateway(app, deps);
    registerOps(app, deps);
    registerAdminRoutes(app, deps);
    registerQueryRoutes(app, deps);
    registerLiveRoutes(app, deps);
    registerJobRoutes(app, deps);
    registerDashboardRoutes(app, deps);
    registerUiRoutes(app, deps.uiDir);
    // [routes] further route groups are registered here, one line each.
    done();
  });

  return app;
}

export type IonServer = ReturnType<typeof buildServer>;
