import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { jobIdFor } from '../../src/core/ids.js';
import { nowIso } from '../../src/core/time.js';
import type { IonEvent, Job } from '../../src/core/types.js';
import { expectError, runChild, startApiApp, type ApiApp } from '../support/api-app.js';

// Replays, job cancel, followed logs and single-module create/update, through app.inject() on
// a real SQLite store and bus. No workers run here: jobs stay where the tests put them (the
// end-to-end file test/e2e/replay.test.ts runs them).

let api: ApiApp;

beforeEach(async () => {
  api = await startApiApp('ion-job-routes-', 1024 * 1024);
});
afterEach(async () => {
  await api.stop();
});

function inject(opts: InjectOptions): Promise<LightMyRequestResponse> {
  return api.app.server!.inject(opts);
}

const store = () => api.app.backends.store;

async function putModule(name: string, body: Record<string, unknown>) {
  return inject({ method: 'PUT', url: `/v1/modules/${name}`, payload: body });
}

async function publish(type: string): Promise<IonEvent> {
  const res = await inject({ method: 'POST', url: '/v1/events', payload: { type } });
  expect(res.statusCode, res.body).toBe(201);
  return (await store().getEvent(res.json<{ eventId: string }>().eventId))!;
}

describe('PUT /v1/modules/:name', () => {
  it('creates, updates (a new version) and leaves an unchanged module alone', async () => {
    const spec = { subscribes: ['doc.new'], run: { command: ['true'] } };
    const created = await putModule('tag', spec);
    expect(created.statusCode, created.body).toBe(201);
    expect(created.json()).toMatchObject({
      change: 'created',
      module: { name: 'tag', version: 1, retries: 3, concurrency: 1 },
    });
    const same = await putModule('tag', { ...spec, name: 'tag' });
    expect(same.json()).toMatchObject({ change: 'unchanged', module: { version: 1 } });
    const updated = await putModule('tag', { ...spec, retries: 0, timeout: '5s' });
    expect(updated.statusCode).toBe(200);
    expect(updated.json()).toMatchObject({
      change: 'updated',
      module: { version: 2, retries: 0, timeoutMs: 5000 },
    });
    // Other modules are untouched, and the new module is subscribed at once.
    await putModule('other', { subscribes: ['x'], run: { command: ['true'] } });
    expect((await store().listModules()).map((m) => m.name)).toEqual(['other', 'tag']);
  });

  it('refuses a name that differs from the URL, a bad field or a bad name, naming the field', async () => {
    const spec = { subscribes: ['doc.new'], run: { command: ['true'] } };
    expect(
      expectError(await putModule('tag', { ...spec, name: 'nottag' }), 400, 'validation_failed'),
    ).toContain('differs from the module named in the URL');
    expect(
      expectError(await putModule('tag', { ...spec, timeout: 'soon' }), 400, 'validation_failed'),
    ).toContain('timeout');
    expect(
      expectError(await putModule('tag', { ...spec, unknown: 1 }), 400, 'validation_failed'),
    ).toContain('unknown');
    expect(expectError(await putModule('Bad_Name', spec), 400, 'validation_failed')).toContain(
      'name',
    );
    expect(await store().listModules()).toEqual([]);
  });

  it('keeps a container module image, resources and warm settings, and versions on them', async () => {
    const spec = {
      subscribes: ['doc.new'],
      executor: 'docker',
      run: { image: 'ion/runtime:local', args: ['-c', 'true'], pull: 'never' },
      resources: { cpu: 0.5, memory: '64Mi' },
      warm: { maxJobs: 3 },
    };
    expect((await putModule('boxed', spec)).statusCode).toBe(201);
    const got = await inject({ method: 'GET', url: '/v1/modules/boxed' });
    expect(got.json()).toMatchObject({
      executor: 'docker',
      run: { image: 'ion/runtime:local', args: ['-c', 'true'], pull: 'never' },
      resources: { cpu: 0.5, memoryBytes: 64 * 2 ** 20 },
      warm: { maxJobs: 3, idleTimeoutMs: 300_000 },
    });
    expect(got.json<{ run: object }>().run).not.toHaveProperty('command');
    const same = await putModule('boxed', spec);
    expect(same.json()).toMatchObject({ change: 'unchanged', module: { version: 1 } });
    const bigger = await putModule('boxed', { ...spec, resources: { cpu: 1, memory: '64Mi' } });
    expect(bigger.json()).toMatchObject({ change: 'updated', module: { version: 2 } });
    const versions = await inject({ method: 'GET', url: '/v1/modules/boxed/versions' });
    expect(
      versions
        .json<{ versions: { spec: { resources: object } }[] }>()
        .versions.map((v) => v.spec.resources),
    ).toEqual([
      { cpu: 0.5, memoryBytes: 64 * 2 ** 20 },
      { cpu: 1, memoryBytes: 64 * 2 ** 20 },
    ]);
  });
});

describe('POST /v1/replays', () => {
  beforeEach(async () => {
    await putModule('tag', { subscribes: ['doc.new'], run: { command: ['true'] } });
  });

  const replay = (payload: Record<string, unknown>) =>
    inject({ method: 'POST', url: '/v1/replays', payload });

  it('replays one event: a pending job linked to the event, and a replay to look up', async () => {
    const event = await publish('doc.new');
    await runChild(store(), event, 'tag');
    const res = await replay({ module: 'tag', eventId: event.eventId });
    expect(res.statusCode, res.body).toBe(201);
    const body = res.json<{
      replay: { replayId: string; jobs: number; states: Record<string, number> };
      matched: number;
    }>();
    expect(body).toMatchObject({ matched: 1, dryRun: false, replay: { jobs: 1, module: 'tag' } });
    expect(body.replay.states).toMatchObject({ pending: 1, succeeded: 0 });

    const jobs = await inject({ url: `/v1/jobs?replayId=${body.replay.replayId}` });
    const [job] = jobs.json<{ jobs: Job[] }>().jobs;
    expect(job).toMatchObject({
      eventId: event.eventId,
      state: 'pending',
      replayId: body.replay.replayId,
      replayOf: jobIdFor('tag', event.eventId),
      pinnedVersion: null,
    });
    const got = await inject({ url: `/v1/replays/${body.replay.replayId}` });
    expect(got.json()).toMatchObject({
      replayId: body.replay.replayId,
      selector: { eventId: event.eventId },
    });
    const listed = await inject({ url: '/v1/replays?module=tag' });
    expect(listed.json<{ replays: unknown[] }>().replays).toHaveLength(1);
  });

  it('backfills a type in a time range, and a dry run only counts', async () => {
    const before = nowIso();
    for (let i = 0; i < 3; i += 1) await publish('doc.new');
    await publish('doc.other');
    const dry = await replay({ module: 'tag', type: 'doc.new', since: before, dryRun: true });
    expect(dry.statusCode).toBe(200);
    expect(dry.json()).toMatchObject({ matched: 3, dryRun: true });
    expect((await inject({ url: '/v1/replays' })).json()).toEqual({ replays: [] });

    const future = new Date(Date.now() + 60_000).toISOString();
    const none = await replay({ module: 'tag', type: 'doc.new', since: future });
    expect(none.json()).toMatchObject({ matched: 0, replay: { jobs: 0 } });
    const all = await replay({ module: 'tag', type: 'doc.new', since: before });
    expect(all.json()).toMatchObject({ matched: 3, replay: { jobs: 3 } });
  });

  it('refuses what cannot be replayed, with the documented errors', async () => {
    const event = await publish('doc.new');
    const other = await publish('doc.other');
    expectError(await replay({}), 400, 'validation_failed');
    expectError(await replay({ module: 'tag' }), 400, 'validation_failed');
    expectError(
      await replay({ module: 'tag', eventId: event.eventId, type: 'doc.new' }),
      400,
      'validation_failed',
    );
    expectError(
      await replay({ module: 'tag', eventId: event.eventId, since: nowIso() }),
      400,
      'validation_failed',
    );
    expect(
      expectError(
        await replay({ module: 'tag', type: 'doc.new', since: nowIso(), until: '2000-01-01' }),
        400,
        'validation_failed',
      ),
    ).toContain('must be before until');
    expect(
      expectError(
        await replay({ module: 'tag', type: 'doc.new', since: 'yesterday' }),
        400,
        'validation_failed',
      ),
    ).toContain('since "yesterday" is not a date-time');
    expect(
      expectError(
        await replay({ module: 'tag', eventId: other.eventId }),
        400,
        'validation_failed',
      ),
    ).toContain('does not subscribe to "doc.other"');
    expectError(await replay({ module: 'nope', eventId: event.eventId }), 404, 'not_found');
    expectError(await replay({ module: 'tag', eventId: 'missing' }), 404, 'not_found');
    expect(
      expectError(
        await replay({ module: 'tag', eventId: event.eventId, version: 7 }),
        404,
        'not_found',
      ),
    ).toContain('has no version 7');
    expectError(await inject({ url: '/v1/replays/missing' }), 404, 'not_found');
    expect(await store().listReplays()).toEqual([]);
  });
});

describe('POST /v1/jobs/:jobId/cancel', () => {
  beforeEach(async () => {
    await putModule('tag', { subscribes: ['doc.new'], run: { command: ['true'] } });
  });

  it('cancels a waiting job at once, and refuses to cancel it twice', async () => {
    const event = await publish('doc.new');
    const { replay } = (
      await inject({
        method: 'POST',
        url: '/v1/replays',
        payload: { module: 'tag', eventId: event.eventId },
      })
    ).json<{ replay: { replayId: string } }>();
    const jobId = jobIdFor('tag', event.eventId, replay.replayId);
    const res = await inject({ method: 'POST', url: `/v1/jobs/${jobId}/cancel` });
    expect(res.statusCode, res.body).toBe(202);
    expect(res.json()).toMatchObject({ status: 'cancelled', job: { jobId, state: 'cancelled' } });
    expect(
      expectError(
        await inject({ method: 'POST', url: `/v1/jobs/${jobId}/cancel` }),
        409,
        'conflict',
      ),
    ).toContain('has already ended (cancelled)');
  });

  it('flags a running job for its worker', async () => {
    const event = await publish('doc.new');
    const jobId = jobIdFor('tag', event.eventId);
    await store().beginAttempt({
      jobId,
      module: 'tag',
      moduleVersion: 1,
      event,
      workerId: 'w',
      startedAt: nowIso(),
      leaseUntil: new Date(Date.now() + 60_000).toISOString(),
    });
    const res = await inject({ method: 'POST', url: `/v1/jobs/${jobId}/cancel` });
    expect(res.statusCode).toBe(202);
    const body = res.json<{ status: string; job: Job }>();
    expect(body.status).toBe('cancelling');
    expect(body.job.state).toBe('running');
    expect(body.job.cancelRequestedAt).not.toBeNull();
  });

  it('answers 404 for an unknown job', async () => {
    expectError(await inject({ method: 'POST', url: '/v1/jobs/missing/cancel' }), 404, 'not_found');
  });
});

describe('GET /v1/jobs with a time range', () => {
  it('keeps the jobs that changed in [since, until), and refuses a time that is not one', async () => {
    await putModule('tag', { subscribes: ['doc.new'], run: { command: ['true'] } });
    const event = await publish('doc.new');
    await runChild(store(), event, 'tag');
    const [job] = await store().listJobs({ module: 'tag' });
    const at = Date.parse(job!.updatedAt);
    const list = async (query: string) =>
      (await inject({ url: `/v1/jobs?module=tag&${query}` })).json<{ jobs: Job[] }>().jobs;
    const iso = (ms: number) => new Date(ms).toISOString();
    expect(await list(`since=${iso(at)}`)).toHaveLength(1);
    expect(await list(`since=${iso(at + 1)}`)).toHaveLength(0);
    expect(await list(`until=${iso(at)}`)).toHaveLength(0);
    expect(await list(`since=${iso(at - 1000)}&until=${iso(at + 1)}`)).toHaveLength(1);
    expect(
      expectError(await inject({ url: '/v1/jobs?since=last-week' }), 400, 'validation_failed'),
    ).toContain('since "last-week" is not a date-time');
  });
});

describe('GET /v1/jobs/:jobId/logs?follow=true', () => {
  it('streams the rest of a finished attempt and ends', async () => {
    await putModule('tag', { subscribes: ['doc.new'], run: { command: ['true'] } });
    const event = await publish('doc.new');
    const jobId = jobIdFor('tag', event.eventId);
    const begun = await store().beginAttempt({
      jobId,
      module: 'tag',
      moduleVersion: 1,
      event,
      workerId: 'w',
      startedAt: nowIso(),
      leaseUntil: new Date(Date.now() + 60_000).toISOString(),
    });
    expect(begun.status).toBe('started');
    await store().renewAttempt(jobId, 1, new Date(Date.now() + 60_000).toISOString(), {
      logTail: 'hello\n',
      logSize: 6,
    });
    await store().failAttempt({
      jobId,
      attempt: 1,
      finishedAt: nowIso(),
      durationMs: 1,
      exitCode: 1,
      errorCode: 'module_failed',
      errorKind: 'module',
      error: 'exit 1',
      logTail: 'hello\nbye\n',
      logBlob: null,
      nextState: 'dead_lettered',
      countsAsFailure: true,
    });
    const res = await inject({ url: `/v1/jobs/${jobId}/logs?follow=true` });
    expect(res.statusCode).toBe(200);
    expect(res.headers['x-ion-attempt']).toBe('1');
    expect(res.body).toBe('hello\nbye\n');
    expectError(
      await inject({ url: `/v1/jobs/${jobId}/logs?follow=true&attempt=2` }),
      404,
      'not_found',
    );
    expectError(await inject({ url: '/v1/jobs/missing/logs?follow=true' }), 404, 'not_found');
  });
});
