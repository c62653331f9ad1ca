import Fastify, { LogController, type FastifyInstance, type FastifyReply } from 'fastify';
import { installAuth } from './auth.js';
import { errorHandler } from './errors.js';
import { installOpenApi } from './openapi.js';
import { registerBlobRoutes } from './routes/blobs.js';
import { registerDashboardRoutes } from './routes/dashboard.js';
import { registerDeadLetterRoutes } from './routes/dead-letters.js';
import type { RouteDeps } from './routes/deps.js';
import { registerEventRoutes } from './routes/events.js';
import { registerGateway } from './routes/gateway.js';
import { registerInsightRoutes } from './routes/insights.js';
import { registerJobRoutes } from './routes/jobs.js';
import { registerLiveRoutes } from './routes/live.js';
import { registerModuleRoutes } from './routes/modules.js';
import { registerOps } from './routes/ops.js';
import { registerReplayRoutes } from './routes/replays.js';
import { registerTokenRoutes } from './routes/tokens.js';
import { registerUiRoutes } from './routes/ui.js';
import {
  clientErrorHandler,
  DEFAULT_SERVER_TIMEOUTS,
  fastifyTimeoutOptions,
  installTimeouts,
  type ServerTimeouts,
} from './timeouts.js';

/** What the server needs: what its routes need, plus what only the server itself uses. */
export interface ServerDeps extends RouteDeps {
  bodyLimitBytes?: number;
  /** PEM certificate and key: the API serves HTTPS only (see config/tls.ts). */
  https?: { cert: Buffer; key: Buffer };
  /** Limits for slow clients (see timeouts.ts); the config's `api.*Ms` keys fit as they are. */
  timeouts?: Partial<ServerTimeouts>;
}

/**
 * Builds the HTTP API without listening, so tests call `app.inject()` and the composition
 * root decides where to listen. All routes live under `/v1`.
 */
export function buildServer(deps: ServerDeps) {
  const timeouts: ServerTimeouts = { ...DEFAULT_SERVER_TIMEOUTS };
  for (const key of Object.keys(timeouts) as (keyof ServerTimeouts)[]) {
    const value = deps.timeouts?.[key];
    if (value !== undefined) timeouts[key] = value;
  }
  const app = Fastify({
    ...fastifyTimeoutOptions(timeouts),
    clientErrorHandler: clientErrorHandler(timeouts),
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
  installTimeouts(app as unknown as FastifyInstance, timeouts);
  app.setErrorHandler(errorHandler(deps.logger));
  app.setNotFoundHandler((request, reply) => {
    void reply
      .status(404)
      .send({ error: { code: 'not_found', message: `no route ${request.method} ${request.url}` } });
  });
  installOpenApi(app as unknown as FastifyInstance);
  // Blob uploads (routes/blobs.ts) stream straight through to the blob store: never buffered.
  app.addContentTypeParser('application/octet-stream', (_request, payload, done) =>
    done(null, payload),
  );

  // Routes live in a plugin registered after the OpenAPI plugin, so it sees every one;
  // the error and not-found handlers above are inherited. Auth comes first, so its hook and
  // refusal schemas cover every route.
  void app.register((app, _opts, done) => {
    installAuth(app, deps.auth);
    if (deps.auth !== undefined) registerTokenRoutes(app, deps.auth.tokens);
    registerOps(app, deps);
    registerModuleRoutes(app, deps);
    registerBlobRoutes(app, deps);
    registerEventRoutes(app, deps);
    registerJobRoutes(app, deps);
    registerDeadLetterRoutes(app, deps);
    registerGateway(app, deps);
    registerInsightRoutes(app, deps);
    registerLiveRoutes(app, deps);
    registerReplayRoutes(app, deps);
    registerDashboardRoutes(app, deps);
    registerUiRoutes(app, deps.uiDir);
    // [routes] further route groups are registered here, one line each.
    done();
  });

  return app;
}

export type IonServer = ReturnType<typeof buildServer>;
