import type { FastifyInstance } from 'fastify';
import type { BackendCheck } from '../../app/control.js';
import type { RouteDeps } from './deps.js';
import { errorBodySchema } from '../errors.js';
import { metricsOf } from '../metrics.js';

/** How long each backend may take to answer a readiness probe. */
const READINESS_TIMEOUT_MS = 2000;

const checkSchema = {
  type: 'object',
  required: ['ok', 'latencyMs'],
  properties: {
    ok: { type: 'boolean' },
    latencyMs: { type: 'integer' },
    error: { type: 'string' },
  },
} as const;
const checksSchema = {
  type: 'object',
  properties: { bus: checkSchema, store: checkSchema, blobs: checkSchema },
} as const;

/**
 * The failing check as the HTTP answer shows it: its error code only (`unavailable`,
 * `timeout`). These routes are open to anyone who reaches the server, so the backend's own
 * message (hosts, bucket names) goes to the server log instead.
 */
function publicCheck(check: BackendCheck): BackendCheck {
  if (check.ok) return check;
  return { ok: false, latencyMs: check.latencyMs, error: check.error.split(':', 1)[0]! };
}

/**
 * Operations endpoints, outside `/v1` and open without a token (probes and scrapers do not
 * carry one): `GET /readyz` (every backend answers) and `GET /metrics` (Prometheus text).
 */
export function registerOps(
  app: FastifyInstance,
  deps: Pick<RouteDeps, 'control' | 'logger'>,
): void {
  const { control, logger } = deps;

  app.get('/healthz', () => ({ status: 'ok' }));

  app.get('/readyz', {
    config: { scope: 'open' },
    schema: {
      response: {
        200: {
          type: 'object',
          properties: { status: { type: 'string', enum: ['ready'] }, checks: checksSchema },
        },
        503: {
          type: 'object',
          required: ['error'],
          properties: {
            status: { type: 'string', enum: ['not_ready'] },
            checks: checksSchema,
            error: errorBodySchema.properties.error,
          },
        },
      },
    },
    handler: async (_request, reply) => {
      const { ready, checks } = await control.readiness(READINESS_TIMEOUT_MS);
      if (ready) return { status: 'ready', checks };
      const failing = Object.entries(checks).filter(([, check]) => !check.ok);
      logger.warn({ checks }, 'readiness probe failed');
      return reply.status(503).send({
        status: 'not_ready',
        checks: {
          bus: publicCheck(checks.bus),
          store: publicCheck(checks.store),
          blobs: publicCheck(checks.blobs),
        },
        error: {
          code: 'unavailable',
          message: `not ready: ${failing.map(([name]) => name).join(', ')} did not answer`,
        },
      });
    },
  });

  app.get('/metrics', { config: { scope: 'open' } }, async (_request, reply) => {
    const metrics = metricsOf(control);
    const text = await metrics.render();
    return reply.header('content-type', metrics.contentType).send(text);
  });
}
