import { createHash, randomBytes } from 'node:crypto';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { IonApp } from '../../src/app/ion-app.js';
import {
  deadLetterAttempt,
  expectError,
  startApiApp,
  startJobAttempt,
  type ApiApp,
} from '../support/api-app.js';
import type { IonEvent } from '../../src/core/types.js';

type Injected = LightMyRequestResponse;

const BODY_LIMIT = 4096;

let fixture: ApiApp;
let app: IonApp;

beforeEach(async () => {
  fixture = await startApiApp('ion-api-', BODY_LIMIT);
  app = fixture.app;
});

afterEach(() => fixture.stop());

function inject(opts: InjectOptions): Promise<Injected> {
  return app.server!.inject(opts);
}

function pipeline(overrides: Record<string, unknown> = {}, extra: Record<string, unknown>[] = []) {
  return {
    modules: [
      {
        name: 'split',
        subscribes: ['file.uploaded'],
        publishes: ['part.ready'],
        run: { command: ['echo', 'hi'] },
        ...overrides,
      },
      ...extra,
    ],
  };
}

async function apply(doc: unknown, prune?: boolean): Promise<Injected> {
  return inject({
    method: 'POST',
    url: '/v1/pipelines/apply',
    payload: prune === undefined ? { pipeline: doc } : { pipeline: doc, prune },
  });
}

async function uploadBlob(bytes: Buffer): Promise<{ sha256: string; size: number }> {
  const res = await inject({
    method: 'PUT',
    url: '/v1/blobs',
    headers: { 'content-type': 'application/octet-stream' },
    payload: bytes,
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

async function publish(payload: unknown, headers: Record<string, string> = {}): Promise<Injected> {
  return inject({
    method: 'POST',
    url: '/v1/events',
    payload: payload as Record<string, unknown>,
    headers,
  });
}

describe('GET /healthz', () => {
  it('answers ok', async () => {
    const res = await inject({ method: 'GET', url: '/healthz' });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toEqual({ status: 'ok' });
  });
});

describe('POST /v1/pipelines/apply', () => {
  it('creates the modules of a valid pipeline at version 1', async () => {
    const res = await apply(
      pipeline({}, [{ name: 'merge', subscribes: ['part.ready'], run: { command: ['cat'] } }]),
    );
    expect([200, 201]).toContain(res.statusCode);
    expect(res.json()).toEqual({
      modules: [
        { name: 'split', version: 1, change: 'created' },
        { name: 'merge', version: 1, change: 'created' },
      ],
    });
  });

  it('reports an unchanged module when the same pipeline is applied again', async () => {
    await apply(pipeline());
    const res = await apply(pipeline());
    expect([200, 201]).toContain(res.statusCode);
    expect(res.json()).toEqual({ modules: [{ name: 'split', version: 1, change: 'unchanged' }] });
  });

  it('makes version 2 when a module changes', async () => {
    await apply(pipeline());
    const res = await apply(pipeline({ timeout: '30s' }));
    expect(res.json()).toEqual({ modules: [{ name: 'split', version: 2, change: 'updated' }] });
    const module = await inject({ method: 'GET', url: '/v1/modules/split' });
    expect(module.json()).toMatchObject({ name: 'split', version: 2, timeoutMs: 30_000 });
  });

  it('deletes modules no longer declared only when prune is set', async () => {
    await apply(
      pipeline({}, [{ name: 'merge', subscribes: ['part.ready'], run: { command: ['cat'] } }]),
    );
    const kept = await apply(pipeline(), false);
    expect(kept.json()).toEqual({ modules: [{ name: 'split', version: 1, change: 'unchanged' }] });
    const pruned = await apply(pipeline(), true);
    expect(pruned.json()).toEqual({
      modules: [
        { name: 'split', version: 1, change: 'unchanged' },
        { name: 'merge', version: 1, change: 'deleted' },
      ],
    });
    expectError(await inject({ method: 'GET', url: '/v1/modules/merge' }), 404, 'not_found');
  });

  it('refuses an invalid pipeline with 400 validation_failed naming the field', async () => {
    const res = await apply(pipeline({ timeout: 'forever' }));
    const message = expectError(res, 400, 'validation_failed');
    expect(message).toContain('modules[0].timeout');
    expect(
      res.json<{ error: { issues?: { path: string }[] } }>().error.issues?.map((i) => i.path),
    ).toContain('modules[0].timeout');
  });

  it('refuses a timeout that comes to 0 ms, naming the field as written in the pipeline', async () => {
    const message = expectError(await apply(pipeline({ timeout: '0s' })), 400, 'validation_failed');
    expect(message).toContain('modules[0].timeout');
  });

  it('refuses an unknown module field, naming it', async () => {
    const message = expectError(await apply(pipeline({ retires: 2 })), 400, 'validation_failed');
    expect(message).toContain('modules[0].retires');
  });

  it('refuses duplicate module names', async () => {
    const message = expectError(
      await apply(pipeline({}, [{ name: 'split', subscribes: ['x'], run: { command: ['cat'] } }])),
      400,
      'validation_failed',
    );
    expect(message).toContain('modules[1].name');
  });

  it('refuses a body without a pipeline or with unknown fields', async () => {
    expectError(
      await inject({ method: 'POST', url: '/v1/pipelines/apply', payload: {} }),
      400,
      'validation_failed',
    );
    expectError(
      await inject({
        method: 'POST',
        url: '/v1/pipelines/apply',
        payload: { pipeline: pipeline(), force: true },
      }),
      400,
      'validation_failed',
    );
  });

  it('stores nothing when the pipeline is invalid', async () => {
    await apply(pipeline({}, [{ name: 'Bad Name', subscribes: ['x'], run: { command: ['cat'] } }]));
    const list = await inject({ method: 'GET', url: '/v1/modules' });
    expect(list.json()).toEqual({ modules: [] });
  });
});

describe('GET /v1/modules', () => {
  it('lists applied modules and returns one by name', async () => {
    await apply(pipeline({ env: { THREADS: 4 } }));
    const list = await inject({ method: 'GET', url: '/v1/modules' });
    expect(list.statusCode).toBe(200);
    const modules = list.json<{ modules: { name: string }[] }>().modules;
    expect(modules.map((m) => m.name)).toEqual(['split']);
    const one = await inject({ method: 'GET', url: '/v1/modules/split' });
    expect(one.statusCode).toBe(200);
    expect(one.json()).toMatchObject({
      name: 'split',
      version: 1,
      subscribes: ['file.uploaded'],
      publishes: ['part.ready'],
      run: { command: ['echo', 'hi'] },
      retries: 3,
      timeoutMs: 600_000,
      concurrency: 1,
      env: { THREADS: '4' },
      paused: false,
    });
  });

  it('answers 404 not_found for an unknown module', async () => {
    const message = expectError(
      await inject({ method: 'GET', url: '/v1/modules/nope' }),
      404,
      'not_found',
    );
    expect(message).toContain('nope');
  });
});

describe('blobs', () => {
  it('stores an octet-stream upload and answers its sha256 and size', async () => {
    const bytes = randomBytes(1000);
    const res = await inject({
      method: 'PUT',
      url: '/v1/blobs',
      headers: { 'content-type': 'application/octet-stream' },
      payload: bytes,
    });
    expect(res.statusCode).toBe(201);
    expect(res.json()).toEqual({
      sha256: createHash('sha256').update(bytes).digest('hex'),
      size: 1000,
    });
  });

  it('accepts a blob larger than the JSON body limit', async () => {
    const bytes = randomBytes(BODY_LIMIT * 10);
    const ref = await uploadBlob(bytes);
    expect(ref.size).toBe(bytes.length);
  });

  it('returns the same bytes on GET', async () => {
    const bytes = randomBytes(3000);
    const { sha256 } = await uploadBlob(bytes);
    const res = await inject({ method: 'GET', url: `/v1/blobs/${sha256}` });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('application/octet-stream');
    expect(Number(res.headers['content-length'])).toBe(bytes.length);
    expect(Buffer.compare(res.rawPayload, bytes)).toBe(0);
  });

  it('refuses an upload with another content type in the error format', async () => {
    const plain = await inject({
      method: 'PUT',
      url: '/v1/blobs',
      headers: { 'content-type': 'text/plain' },
      payload: 'hello',
    });
    expect(plain.statusCode).toBeGreaterThanOrEqual(400);
    expect(plain.statusCode).toBeLessThan(500);
    expectError(plain, plain.statusCode, plain.json<{ error: { code: string } }>().error.code);
    const json = await inject({ method: 'PUT', url: '/v1/blobs', payload: { a: 1 } });
    expectError(json, 415, 'unsupported_media_type');
    const xml = await inject({
      method: 'PUT',
      url: '/v1/blobs',
      headers: { 'content-type': 'application/xml' },
      payload: '<a/>',
    });
    expectError(xml, 415, 'unsupported_media_type');
  });

  it('accepts the octet-stream content type with parameters or in other letter case', async () => {
    const bytes = randomBytes(16);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    for (const contentType of [
      'application/octet-stream; charset=binary',
      'Application/Octet-Stream',
    ]) {
      const res = await inject({
        method: 'PUT',
        url: '/v1/blobs',
        headers: { 'content-type': contentType },
        payload: bytes,
      });
      expect(res.statusCode, `${contentType}: ${res.body}`).toBe(201);
      expect(res.json<{ sha256: string }>().sha256).toBe(sha256);
    }
  });

  it('answers 404 for an unknown blob and 400 for a malformed hash', async () => {
    expectError(
      await inject({ method: 'GET', url: `/v1/blobs/${'0'.repeat(64)}` }),
      404,
      'not_found',
    );
    expectError(
      await inject({ method: 'GET', url: '/v1/blobs/not-a-hash' }),
      400,
      'validation_failed',
    );
  });
});

describe('POST /v1/events and GET /v1/events/:id', () => {
  it('publishes an event with a data object and reads it back', async () => {
    const res = await publish({ type: 'file.uploaded', data: { colour: 'red', size: 'big' } });
    expect(res.statusCode).toBe(201);
    const { eventId, correlationId, created } = res.json<{
      eventId: string;
      correlationId: string;
      created: boolean;
    }>();
    expect(created).toBe(true);
    expect(correlationId).toBe(eventId);
    const got = await inject({ method: 'GET', url: `/v1/events/${eventId}` });
    expect(got.statusCode).toBe(200);
    expect(got.json()).toMatchObject({
      eventId,
      type: 'file.uploaded',
      correlationId,
      parentEventId: null,
      source: 'api',
      data: { colour: 'red', size: 'big' },
      metadata: [
        { key: 'colour', value: 'red' },
        { key: 'size', value: 'big' },
      ],
      files: [],
    });
  });

  it('keeps the order of a key/value array in metadata', async () => {
    const data = [
      { key: 'zeta', value: '1' },
      { key: 'alpha', value: '2' },
      { key: 'mid', value: '3' },
    ];
    const res = await publish({ type: 'file.uploaded', data });
    expect(res.statusCode).toBe(201);
    const got = await inject({
      method: 'GET',
      url: `/v1/events/${res.json<{ eventId: string }>().eventId}`,
    });
    expect(got.json<{ metadata: unknown }>().metadata).toEqual(data);
  });

  it('attaches uploaded blobs as files at their normalised paths', async () => {
    const bytes = randomBytes(77);
    const { sha256 } = await uploadBlob(bytes);
    const res = await publish({
      type: 'file.uploaded',
      files: [
        { path: './scans/page1.png', sha256 },
        { path: 'top.bin', sha256 },
      ],
    });
    expect(res.statusCode, res.body).toBe(201);
    const got = await inject({
      method: 'GET',
      url: `/v1/events/${res.json<{ eventId: string }>().eventId}`,
    });
    expect(got.json<{ files: unknown }>().files).toEqual([
      { path: 'scans/page1.png', sha256, size: 77 },
      { path: 'top.bin', sha256, size: 77 },
    ]);
  });

  it('refuses a file path with ".." and names the field', async () => {
    const { sha256 } = await uploadBlob(randomBytes(10));
    const message = expectError(
      await publish({ type: 'file.uploaded', files: [{ path: '../escape.txt', sha256 }] }),
      400,
      'validation_failed',
    );
    expect(message).toContain('files[0].path');
  });

  it('refuses an absolute file path', async () => {
    const { sha256 } = await uploadBlob(randomBytes(10));
    expectError(
      await publish({ type: 'file.uploaded', files: [{ path: '/etc/passwd', sha256 }] }),
      400,
      'validation_failed',
    );
  });

  it('refuses the same path listed twice', async () => {
    const { sha256 } = await uploadBlob(randomBytes(10));
    expectError(
      await publish({
        type: 'file.uploaded',
        files: [
          { path: 'a.txt', sha256 },
          { path: './a.txt', sha256 },
        ],
      }),
      400,
      'validation_failed',
    );
  });

  it('refuses a file whose blob was never uploaded', async () => {
    const message = expectError(
      await publish({ type: 'file.uploaded', files: [{ path: 'a.txt', sha256: 'f'.repeat(64) }] }),
      400,
      'validation_failed',
    );
    expect(message).toContain('files[0].sha256');
  });

  it('refuses a bad event type', async () => {
    expect(expectError(await publish({ type: 'has space' }), 400, 'validation_failed')).toContain(
      'has space',
    );
    expectError(await publish({ type: 'files.*' }), 400, 'validation_failed');
    expectError(await publish({ type: '' }), 400, 'validation_failed');
  });

  it('refuses an unknown body field', async () => {
    expectError(await publish({ type: 'file.uploaded', colour: 'red' }), 400, 'validation_failed');
  });

  it('refuses a body without a type', async () => {
    expectError(await publish({ data: { a: 'b' } }), 400, 'validation_failed');
  });

  it('refuses a malformed JSON body with validation_failed', async () => {
    const res = await inject({
      method: 'POST',
      url: '/v1/events',
      headers: { 'content-type': 'application/json' },
      payload: '{"type": "file.uploaded",',
    });
    expectError(res, 400, 'validation_failed');
  });

  it('refuses an empty JSON body with validation_failed', async () => {
    const res = await inject({
      method: 'POST',
      url: '/v1/events',
      headers: { 'content-type': 'application/json' },
      payload: '',
    });
    expectError(res, 400, 'validation_failed');
  });

  it('refuses a body over the limit with 413 payload_too_large', async () => {
    const res = await publish({ type: 'file.uploaded', data: { big: 'x'.repeat(BODY_LIMIT * 2) } });
    expectError(res, 413, 'payload_too_large');
  });

  it('answers the same event with created false when the idempotency key is reused in the body', async () => {
    const first = await publish({ type: 'file.uploaded', idempotencyKey: 'order-1' });
    expect(first.statusCode).toBe(201);
    expect(first.json<{ created: boolean }>().created).toBe(true);
    const second = await publish({ type: 'file.uploaded', idempotencyKey: 'order-1' });
    expect(second.statusCode).toBe(200);
    expect(second.json<{ created: boolean }>().created).toBe(false);
    expect(second.json<{ eventId: string }>().eventId).toBe(
      first.json<{ eventId: string }>().eventId,
    );
    const other = await publish({ type: 'file.uploaded', idempotencyKey: 'order-2' });
    expect(other.json<{ eventId: string }>().eventId).not.toBe(
      first.json<{ eventId: string }>().eventId,
    );
  });

  it('answers the same event with created false when the Idempotency-Key header is reused', async () => {
    const first = await publish({ type: 'file.uploaded' }, { 'Idempotency-Key': 'hdr-1' });
    expect(first.statusCode).toBe(201);
    const second = await publish({ type: 'file.uploaded' }, { 'Idempotency-Key': 'hdr-1' });
    expect(second.statusCode).toBe(200);
    expect(second.json()).toEqual({ ...first.json<object>(), created: false });
    const viaBody = await publish({ type: 'file.uploaded', idempotencyKey: 'hdr-1' });
    expect(viaBody.json<{ eventId: string }>().eventId).toBe(
      first.json<{ eventId: string }>().eventId,
    );
  });

  it('gives a new event each time without an idempotency key', async () => {
    const a = await publish({ type: 'file.uploaded' });
    const b = await publish({ type: 'file.uploaded' });
    expect(a.json<{ eventId: string }>().eventId).not.toBe(b.json<{ eventId: string }>().eventId);
    expect(b.statusCode).toBe(201);
  });

  it('answers 404 not_found for an unknown event', async () => {
    expectError(
      await inject({ method: 'GET', url: '/v1/events/00000000-0000-4000-8000-000000000000' }),
      404,
      'not_found',
    );
  });
});

describe('GET /v1/traces/:correlationId', () => {
  it('returns the root event of a published correlation id', async () => {
    const { eventId } = (
      await publish({ type: 'file.uploaded', data: [{ key: 'k', value: 'v' }] })
    ).json<{ eventId: string }>();
    const res = await inject({ method: 'GET', url: `/v1/traces/${eventId}` });
    expect(res.statusCode).toBe(200);
    const trace = res.json<{
      correlationId: string;
      events: { eventId: string; data: unknown; metadata: unknown }[];
      jobs: unknown[];
      insights: unknown[];
    }>();
    expect(trace.correlationId).toBe(eventId);
    expect(trace.events.map((e) => e.eventId)).toEqual([eventId]);
    expect(trace.events[0]!.data).toEqual({ k: 'v' });
    expect(trace.events[0]!.metadata).toEqual([{ key: 'k', value: 'v' }]);
    expect(trace.jobs).toEqual([]);
    expect(trace.insights).toEqual([]);
  });

  it('answers 404 not_found for an unknown correlation id', async () => {
    expectError(
      await inject({ method: 'GET', url: '/v1/traces/unknown-correlation' }),
      404,
      'not_found',
    );
  });
});

describe('jobs and dead letters', () => {
  /** Publishes an event through the API and records a running attempt for `module` in the real store. */
  async function startJob(module: string): Promise<{ event: IonEvent; jobId: string }> {
    const { eventId } = (await publish({ type: 'file.uploaded' })).json<{ eventId: string }>();
    const event = (await app.backends.store.getEvent(eventId))!;
    const { jobId, attempt } = await startJobAttempt(app.backends.store, event, module);
    expect(attempt).toBe(1);
    return { event, jobId };
  }

  const deadLetter = (jobId: string) => deadLetterAttempt(app.backends.store, jobId, 1);

  beforeEach(async () => {
    await apply(
      pipeline({}, [{ name: 'merge', subscribes: ['file.uploaded'], run: { command: ['cat'] } }]),
    );
  });

  it('lists jobs and filters them by module, state, event and correlation id', async () => {
    const a = await startJob('split');
    const b = await startJob('merge');
    await deadLetter(b.jobId);

    const all = (await inject({ method: 'GET', url: '/v1/jobs' })).json<{
      jobs: { jobId: string }[];
    }>().jobs;
    expect(all.map((j) => j.jobId).sort()).toEqual([a.jobId, b.jobId].sort());

    const byModule = (await inject({ method: 'GET', url: '/v1/jobs?module=merge' })).json<{
      jobs: { jobId: string }[];
    }>().jobs;
    expect(byModule.map((j) => j.jobId)).toEqual([b.jobId]);

    const running = (await inject({ method: 'GET', url: '/v1/jobs?state=running' })).json<{
      jobs: { jobId: string; state: string }[];
    }>().jobs;
    expect(running.map((j) => j.jobId)).toEqual([a.jobId]);
    expect(running[0]!.state).toBe('running');

    const dead = (await inject({ method: 'GET', url: '/v1/jobs?state=dead_lettered' })).json<{
      jobs: { jobId: string }[];
    }>().jobs;
    expect(dead.map((j) => j.jobId)).toEqual([b.jobId]);

    const byEvent = (
      await inject({ method: 'GET', url: `/v1/jobs?eventId=${a.event.eventId}` })
    ).json<{ jobs: { jobId: string }[] }>().jobs;
    expect(byEvent.map((j) => j.jobId)).toEqual([a.jobId]);

    const byCorrelation = (
      await inject({ method: 'GET', url: `/v1/jobs?correlationId=${b.event.correlationId}` })
    ).json<{ jobs: { jobId: string }[] }>().jobs;
    expect(byCorrelation.map((j) => j.jobId)).toEqual([b.jobId]);

    const limited = (await inject({ method: 'GET', url: '/v1/jobs?limit=1' })).json<{
      jobs: unknown[];
    }>().jobs;
    expect(limited).toHaveLength(1);
  });

  it('refuses an invalid state, an unknown filter and a bad limit with 400', async () => {
    expect(
      expectError(
        await inject({ method: 'GET', url: '/v1/jobs?state=exploded' }),
        400,
        'validation_failed',
      ),
    ).toContain('state');
    expectError(
      await inject({ method: 'GET', url: '/v1/jobs?modul=split' }),
      400,
      'validation_failed',
    );
    expectError(await inject({ method: 'GET', url: '/v1/jobs?limit=0' }), 400, 'validation_failed');
    expectError(
      await inject({ method: 'GET', url: '/v1/jobs?limit=lots' }),
      400,
      'validation_failed',
    );
  });

  it('returns one job with its attempts, and 404 for an unknown job', async () => {
    const { jobId, event } = await startJob('split');
    const res = await inject({ method: 'GET', url: `/v1/jobs/${jobId}` });
    expect(res.statusCode).toBe(200);
    const body = res.json<{
      job: { jobId: string; module: string; eventId: string; state: string };
      attempts: { attempt: number; workerId: string; outcome: string }[];
    }>();
    expect(body.job).toMatchObject({
      jobId,
      module: 'split',
      eventId: event.eventId,
      state: 'running',
    });
    expect(body.attempts).toEqual([
      expect.objectContaining({ attempt: 1, workerId: 'test-worker', outcome: 'running' }),
    ]);
    expectError(await inject({ method: 'GET', url: '/v1/jobs/no-such-job' }), 404, 'not_found');
  });

  it('returns the log tail of the last attempt, and 404 for an unknown job or attempt', async () => {
    const { jobId } = await startJob('split');
    await deadLetter(jobId);
    const res = await inject({ method: 'GET', url: `/v1/jobs/${jobId}/logs` });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toContain('text/plain');
    expect(res.headers['x-ion-attempt']).toBe('1');
    expect(res.body).toBe('boom\n');
    expectError(
      await inject({ method: 'GET', url: `/v1/jobs/${jobId}/logs?attempt=9` }),
      404,
      'not_found',
    );
    expectError(
      await inject({ method: 'GET', url: '/v1/jobs/no-such-job/logs' }),
      404,
      'not_found',
    );
  });

  it('lists no dead letters on a fresh install, and 404 for redrive or discard of an unknown one', async () => {
    const list = await inject({ method: 'GET', url: '/v1/dead-letters' });
    expect(list.statusCode).toBe(200);
    expect(list.json()).toEqual({ deadLetters: [] });
    expectError(
      await inject({ method: 'POST', url: '/v1/dead-letters/nope/redrive' }),
      404,
      'not_found',
    );
    expectError(await inject({ method: 'DELETE', url: '/v1/dead-letters/nope' }), 404, 'not_found');
  });

  it('lists a dead-lettered job, redrives it back to pending and then no longer lists it', async () => {
    const { jobId } = await startJob('split');
    await deadLetter(jobId);
    const list = (await inject({ method: 'GET', url: '/v1/dead-letters?module=split' })).json<{
      deadLetters: { id: string; jobId: string; reason: string }[];
    }>().deadLetters;
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ jobId, reason: 'retries exhausted' });
    expect((await inject({ method: 'GET', url: '/v1/dead-letters?module=merge' })).json()).toEqual({
      deadLetters: [],
    });

    const redrive = await inject({
      method: 'POST',
      url: `/v1/dead-letters/${list[0]!.id}/redrive`,
    });
    expect(redrive.statusCode).toBe(200);
    expect(redrive.json<{ job: { jobId: string; state: string } }>().job).toMatchObject({
      jobId,
      state: 'pending',
    });
    expect((await inject({ method: 'GET', url: '/v1/dead-letters' })).json()).toEqual({
      deadLetters: [],
    });
    expectError(
      await inject({ method: 'POST', url: `/v1/dead-letters/${list[0]!.id}/redrive` }),
      404,
      'not_found',
    );
  });

  it('discards a dead letter with 204', async () => {
    const { jobId } = await startJob('merge');
    await deadLetter(jobId);
    const [entry] = (await inject({ method: 'GET', url: '/v1/dead-letters' })).json<{
      deadLetters: { id: string }[];
    }>().deadLetters;
    const res = await inject({ method: 'DELETE', url: `/v1/dead-letters/${entry!.id}` });
    expect(res.statusCode).toBe(204);
    expect(res.body).toBe('');
    expect((await inject({ method: 'GET', url: '/v1/dead-letters' })).json()).toEqual({
      deadLetters: [],
    });
    expectError(
      await inject({ method: 'DELETE', url: `/v1/dead-letters/${entry!.id}` }),
      404,
      'not_found',
    );
  });

  it('includes the jobs of a correlation id in its trace', async () => {
    const { jobId, event } = await startJob('split');
    const trace = (await inject({ method: 'GET', url: `/v1/traces/${event.correlationId}` })).json<{
      jobs: { jobId: string }[];
    }>();
    expect(trace.jobs.map((j) => j.jobId)).toEqual([jobId]);
  });
});

describe('unknown routes', () => {
  it('answers 404 not_found in the error format', async () => {
    const message = expectError(
      await inject({ method: 'GET', url: '/v1/nothing-here' }),
      404,
      'not_found',
    );
    expect(message).toContain('/v1/nothing-here');
    expectError(await inject({ method: 'DELETE', url: '/v1/modules' }), 404, 'not_found');
    expectError(await inject({ method: 'POST', url: '/healthz' }), 404, 'not_found');
  });

  it('answers a malformed percent-encoding in the URL with 400 in the error format', async () => {
    expectError(await inject({ method: 'GET', url: '/v1/modules/%E0' }), 400, 'validation_failed');
  });

  it('looks up ids up to the 200 characters the routes allow, answering 404 in the error format', async () => {
    const id = 'a'.repeat(150);
    expectError(await inject({ method: 'GET', url: `/v1/events/${id}` }), 404, 'not_found');
    expectError(await inject({ method: 'GET', url: `/v1/jobs/${id}` }), 404, 'not_found');
  });

  it('refuses an over-long id in the error format', async () => {
    const res = await inject({ method: 'GET', url: `/v1/events/${'a'.repeat(300)}` });
    expect(res.statusCode).toBeGreaterThanOrEqual(400);
    expect(res.statusCode).toBeLessThan(500);
    expectError(res, res.statusCode, 'validation_failed');
  });
});
