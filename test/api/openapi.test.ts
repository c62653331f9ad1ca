import { describe, expect, it } from 'vitest';
import { buildServer } from '../../src/api/server.js';
import { createLogger } from '../../src/app/logger.js';
import type { Control } from '../../src/app/control.js';

// The OpenAPI document is generated from the routes' schemas; serving it touches no backend,
// so the control layer is never called here.
describe('OpenAPI reference', () => {
  const app = buildServer({ control: {} as Control, logger: createLogger('silent') });

  it('serves an OpenAPI 3 document listing every v1 route with its methods', async () => {
    const res = await app.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    const doc = res.json<{ openapi: string; paths: Record<string, Record<string, unknown>> }>();
    expect(doc.openapi).toMatch(/^3\./);
    const routes = app.printRoutes({ commonPrefix: false });
    for (const path of [
      '/v1/events',
      '/v1/jobs/{jobId}',
      '/v1/traces/{correlationId}',
      '/v1/dead-letters/{id}/redrive',
      '/v1/blobs',
    ]) {
      expect(doc.paths[path], `${path} in the document`).toBeDefined();
    }
    expect(Object.keys(doc.paths['/v1/events']!)).toContain('post');
    expect(routes).toContain('/v1/events');
  });

  it('serves a browsable reference at /docs', async () => {
    const res = await app.inject({ method: 'GET', url: '/docs/' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/text\/html/);
    expect(res.body).toContain('swagger');
  });
});
