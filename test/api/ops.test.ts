import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { IonApp, type Roles } from '../../src/app/ion-app.js';
import { createLogger } from '../../src/app/logger.js';
import { loadConfig } from '../../src/config/config.js';
import { waitFor } from '../support/wait.js';

let dir: string | undefined;
let app: IonApp | undefined;

async function startApp(roles: Roles, logger = createLogger('silent')): Promise<IonApp> {
  dir = await mkdtemp(join(tmpdir(), 'ion-ops-'));
  const config = loadConfig({
    flags: {
      dataDir: dir,
      api: { port: 0 },
      dispatcher: { retryBaseDelayMs: 10, retryMaxDelayMs: 20, moduleRefreshMs: 50 },
    },
  });
  app = await IonApp.create(config, logger, roles, {});
  await app.start();
  return app;
}

afterEach(async () => {
  await app?.stop();
  app = undefined;
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

function inject(opts: InjectOptions): Promise<LightMyRequestResponse> {
  return app!.server!.inject(opts);
}

/** The value of one sample line of the Prometheus text, or undefined when it is absent. */
function sample(
  text: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const wanted = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .sort();
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (match === null || match[1] !== name) continue;
    const have = (match[2] ?? '').split(',').filter((l) => l !== '');
    if (wanted.every((l) => have.includes(l)) && have.length === wanted.length)
      return Number(match[3]);
  }
  return undefined;
}

/** A logger at `warn` whose lines (parsed) land in `lines`. */
function capturingLogger(): {
  logger: ReturnType<typeof createLogger>;
  lines: Record<string, unknown>[];
} {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { logger: createLogger('warn', sink), lines };
}

async function applyModules(modules: { name: string; subscribes: string[] }[]): Promise<void> {
  const res = await inject({
    method: 'POST',
    url: '/v1/pipelines/apply',
    payload: { pipeline: { modules: modules.map((m) => ({ ...m, run: { command: ['true'] } })) } },
  });
  expect(res.statusCode, res.body).toBe(200);
}

async function scrape(): Promise<string> {
  const res = await inject({ method: 'GET', url: '/metrics' });
  expect(res.statusCode).toBe(200);
  expect(res.headers['content-type']).toContain('text/plain');
  return res.body;
}

describe('GET /readyz', () => {
  it('answers 200 ready when the bus, the store and the blob store answer', async () => {
    await startApp({ api: true, relay: true, workers: false });
    const res = await inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json<{ status: string; checks: Record<string, { ok: boolean }> }>();
    expect(body.status).toBe('ready');
    expect(Object.keys(body.checks).sort()).toEqual(['blobs', 'bus', 'store']);
    for (const check of Object.values(body.checks)) expect(check.ok).toBe(true);
  });

  it('answers 503 naming the failing backend once the bus is closed', async () => {
    const ion = await startApp({ api: true, relay: false, workers: false });
    await ion.backends.bus.close();
    const res = await inject({ method: 'GET', url: '/readyz' });
    expect(res.statusCode, res.body).toBe(503);
    const body = res.json<{
      status: string;
      checks: Record<string, { ok: boolean; error?: string }>;
      error: { code: string; message: string };
    }>();
    expect(body.status).toBe('not_ready');
    expect(body.checks.bus!.ok).toBe(false);
    expect(body.checks.bus!.error).toBe('unavailable');
    expect(body.checks.store!.ok).toBe(true);
    expect(body.checks.blobs!.ok).toBe(true);
    expect(body.error).toEqual({ code: 'unavailable', message: 'not ready: bus did not answer' });
  });
});

describe('GET /metrics', () => {
  it('lists every Ion metric in Prometheus text, even before anything happened', async () => {
    await startApp({ api: true, relay: true, workers: false });
    const text = await scrape();
    for (const name of [
      'ion_events_published_total',
      'ion_jobs_total',
      'ion_job_duration_seconds',
      'ion_dead_letters_total',
    ]) {
      expect(text).toContain(`# TYPE ${name} `);
    }
    expect(text).toContain('# TYPE ion_job_duration_seconds histogram');
    expect(sample(text, 'ion_events_published_total', { type: 'file.uploaded' })).toBeUndefined();
  });

  it('counts published events by type, once per event, whichever route published them', async () => {
    await startApp({ api: true, relay: true, workers: false });
    await inject({ method: 'POST', url: '/v1/events', payload: { type: 'file.uploaded' } });
    await inject({ method: 'POST', url: '/v1/gateway/file.uploaded', payload: { a: 'b' } });
    const keyed = { 'idempotency-key': 'k-1' };
    await inject({ method: 'POST', url: '/v1/gateway/order.placed', headers: keyed, payload: {} });
    const retry = await inject({
      method: 'POST',
      url: '/v1/gateway/order.placed',
      headers: keyed,
      payload: {},
    });
    expect(retry.statusCode).toBe(200); // an idempotent replay publishes nothing new
    const text = await scrape();
    expect(sample(text, 'ion_events_published_total', { type: 'file.uploaded' })).toBe(2);
    expect(sample(text, 'ion_events_published_total', { type: 'order.placed' })).toBe(1);
  });

  it('counts job outcomes, durations and dead letters once workers ran modules', async () => {
    await startApp({ api: true, relay: true, workers: true });
    const applied = await inject({
      method: 'POST',
      url: '/v1/pipelines/apply',
      payload: {
        pipeline: {
          modules: [
            { name: 'ok', subscribes: ['file.uploaded'], run: { command: ['true'] } },
            {
              name: 'broken',
              subscribes: ['file.uploaded'],
              run: { command: ['false'] },
              retries: 1,
            },
          ],
        },
      },
    });
    expect(applied.statusCode, applied.body).toBe(200);
    const published = await inject({
      method: 'POST',
      url: '/v1/events',
      payload: { type: 'file.uploaded' },
    });
    expect(published.statusCode).toBe(201);

    const text = await waitFor('both jobs to settle in the metrics', async () => {
      const t = await scrape();
      const ok = sample(t, 'ion_jobs_total', { module: 'ok', outcome: 'succeeded' });
      const dead = sample(t, 'ion_dead_letters_total', { module: 'broken' });
      return ok === 1 && dead === 1 ? t : undefined;
    });
    expect(sample(text, 'ion_jobs_total', { module: 'broken', outcome: 'failed' })).toBe(1);
    expect(sample(text, 'ion_jobs_total', { module: 'broken', outcome: 'dead_lettered' })).toBe(1);
    expect(sample(text, 'ion_job_duration_seconds_count', { module: 'ok' })).toBe(1);
    expect(sample(text, 'ion_job_duration_seconds_count', { module: 'broken' })).toBe(2);
    expect(sample(text, 'ion_job_duration_seconds_sum', { module: 'ok' })).toBeGreaterThan(0);
    expect(sample(text, 'ion_job_duration_seconds_bucket', { module: 'ok', le: '+Inf' })).toBe(1);
    expect(sample(text, 'ion_events_published_total', { type: 'file.uploaded' })).toBe(1);
  });

  it('reports the queue depth of every module subscription, ready and in flight', async () => {
    await startApp({ api: true, relay: true, workers: false });
    await applyModules([
      { name: 'resizer', subscribes: ['image.uploaded'] },
      { name: 'auditor', subscribes: ['order.placed'] },
    ]);
    for (let n = 0; n < 3; n++) {
      const res = await inject({
        method: 'POST',
        url: '/v1/events',
        payload: { type: 'image.uploaded' },
      });
      expect(res.statusCode).toBe(201);
    }
    // No worker consumes: the relay's copies wait in the subscription.
    const text = await waitFor('the relayed events to be counted as ready', async () => {
      const t = await scrape();
      return sample(t, 'ion_queue_depth', { subscription: 'resizer', state: 'ready' }) === 3
        ? t
        : undefined;
    });
    expect(text).toContain('# TYPE ion_queue_depth gauge');
    expect(sample(text, 'ion_queue_depth', { subscription: 'resizer', state: 'in_flight' })).toBe(
      0,
    );
    expect(sample(text, 'ion_queue_depth', { subscription: 'auditor', state: 'ready' })).toBe(0);
    expect(sample(text, 'ion_queue_depth', { subscription: 'auditor', state: 'in_flight' })).toBe(
      0,
    );

    // A delivery taken and not settled is in flight.
    const controller = new AbortController();
    const deliveries = app!.backends.bus.consume('resizer', { signal: controller.signal });
    const taken = await deliveries[Symbol.asyncIterator]().next();
    expect(taken.done).toBe(false);
    const after = await scrape();
    expect(sample(after, 'ion_queue_depth', { subscription: 'resizer', state: 'ready' })).toBe(2);
    expect(sample(after, 'ion_queue_depth', { subscription: 'resizer', state: 'in_flight' })).toBe(
      1,
    );
    controller.abort();

    // A deleted module's series goes with it.
    expect((await inject({ method: 'DELETE', url: '/v1/modules/auditor' })).statusCode).toBe(204);
    const pruned = await scrape();
    expect(
      sample(pruned, 'ion_queue_depth', { subscription: 'auditor', state: 'ready' }),
    ).toBeUndefined();
  });

  it('still answers 200 without the queue depth, and logs a warning, when the bus fails', async () => {
    const { logger, lines } = capturingLogger();
    const ion = await startApp({ api: true, relay: false, workers: false }, logger);
    await applyModules([{ name: 'resizer', subscribes: ['image.uploaded'] }]);
    expect(
      sample(await scrape(), 'ion_queue_depth', { subscription: 'resizer', state: 'ready' }),
    ).toBe(0);

    await ion.backends.bus.close();
    const text = await scrape();
    expect(text).toContain('# TYPE ion_events_published_total counter');
    expect(text).toContain('# TYPE ion_queue_depth gauge');
    expect(
      sample(text, 'ion_queue_depth', { subscription: 'resizer', state: 'ready' }),
    ).toBeUndefined();
    const warning = lines.find((l) => String(l.msg).startsWith('ion_queue_depth left out'));
    expect(warning, JSON.stringify(lines)).toMatchObject({
      component: 'metrics',
      failed: [{ subscription: 'resizer' }],
    });
  });
});
