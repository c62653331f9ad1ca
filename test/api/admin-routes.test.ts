import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { IonApp, type Roles } from '../../src/app/ion-app.js';
import { createLogger } from '../../src/app/logger.js';
import { loadConfig } from '../../src/config/config.js';
import { jobIdFor } from '../../src/core/ids.js';
import { deadLetterJob } from '../support/api-app.js';
import { waitFor } from '../support/wait.js';

// Module administration and bulk dead-letter routes, through app.inject() on a real SQLite
// store and bus.

let dir: string | undefined;
let app: IonApp | undefined;
/** Log lines of the running app, to wait for the worker pool to act. */
let logLines: string[] = [];

async function startApp(roles: Roles): Promise<void> {
  dir = await mkdtemp(join(tmpdir(), 'ion-admin-'));
  logLines = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      logLines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      done();
    },
  });
  const config = loadConfig({ flags: { dataDir: dir, api: { port: 0 } } });
  app = await IonApp.create(config, createLogger('info', sink), roles, {});
  await app.start();
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

function expectError(res: LightMyRequestResponse, status: number, code: string): void {
  expect(res.statusCode, res.body).toBe(status);
  const body = res.json<{ error: { code: string; message: string } }>();
  expect(Object.keys(body)).toEqual(['error']);
  expect(body.error.code).toBe(code);
  expect(body.error.message.length).toBeGreaterThan(0);
}

function module(name: string, extra: Record<string, unknown> = {}) {
  return { name, subscribes: ['file.uploaded'], run: { command: ['true'] }, ...extra };
}

async function apply(modules: Record<string, unknown>[]): Promise<void> {
  const res = await inject({
    method: 'POST',
    url: '/v1/pipelines/apply',
    payload: { pipeline: { modules } },
  });
  expect(res.statusCode, res.body).toBe(200);
}

async function publish(): Promise<string> {
  const res = await inject({
    method: 'POST',
    url: '/v1/events',
    payload: { type: 'file.uploaded' },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json<{ eventId: string }>().eventId;
}

/** A dead-lettered job of `moduleName` for a fresh event, written straight to the store. */
async function deadLetter(moduleName: string): Promise<string> {
  const store = app!.backends.store;
  return deadLetterJob(store, (await store.getEvent(await publish()))!, moduleName);
}

async function deadLetterIds(moduleName?: string): Promise<string[]> {
  const url =
    moduleName === undefined ? '/v1/dead-letters' : `/v1/dead-letters?module=${moduleName}`;
  return (await inject({ method: 'GET', url }))
    .json<{ deadLetters: { id: string }[] }>()
    .deadLetters.map((d) => d.id)
    .sort();
}

const NO_WORKERS: Roles = { api: true, relay: true, workers: false };

describe('module admin routes', () => {
  it('pauses and resumes a module, and 404s an unknown one', async () => {
    await startApp(NO_WORKERS);
    await apply([module('split')]);
    const paused = await inject({ method: 'POST', url: '/v1/modules/split/pause' });
    expect(paused.statusCode, paused.body).toBe(200);
    expect(paused.json()).toMatchObject({ name: 'split', version: 1, paused: true });
    expect((await inject({ method: 'GET', url: '/v1/modules/split' })).json()).toMatchObject({
      paused: true,
    });
    const resumed = await inject({ method: 'POST', url: '/v1/modules/split/resume' });
    expect(resumed.json()).toMatchObject({ name: 'split', paused: false });
    expectError(await inject({ method: 'POST', url: '/v1/modules/nope/pause' }), 404, 'not_found');
    expectError(await inject({ method: 'POST', url: '/v1/modules/nope/resume' }), 404, 'not_found');
  });

  it('lists versions, one per change, kept after a delete', async () => {
    await startApp(NO_WORKERS);
    await apply([module('split')]);
    await apply([module('split')]); // unchanged
    await apply([module('split', { retries: 4 })]);
    const res = await inject({ method: 'GET', url: '/v1/modules/split/versions' });
    expect(res.statusCode, res.body).toBe(200);
    const { versions } = res.json<{
      versions: { version: number; spec: { retries: number }; createdAt: string }[];
    }>();
    expect(versions.map((v) => v.version)).toEqual([1, 2]);
    expect(versions[1]!.spec.retries).toBe(4);

    expect((await inject({ method: 'DELETE', url: '/v1/modules/split' })).statusCode).toBe(204);
    const after = await inject({ method: 'GET', url: '/v1/modules/split/versions' });
    expect(after.json<{ versions: unknown[] }>().versions).toHaveLength(2);
    expectError(
      await inject({ method: 'GET', url: '/v1/modules/nope/versions' }),
      404,
      'not_found',
    );
  });

  it('deletes a module: gone from get and list, its subscription removed, its jobs kept; 404 unknown', async () => {
    await startApp(NO_WORKERS);
    await apply([module('split'), module('merge')]);
    const jobId = await deadLetter('split');
    expect((await inject({ method: 'DELETE', url: '/v1/modules/split' })).statusCode).toBe(204);
    expectError(await inject({ method: 'GET', url: '/v1/modules/split' }), 404, 'not_found');
    const names = (await inject({ method: 'GET', url: '/v1/modules' }))
      .json<{ modules: { name: string }[] }>()
      .modules.map((m) => m.name);
    expect(names).toEqual(['merge']);
    // History kept: the job of the deleted module is still there.
    expect((await inject({ method: 'GET', url: `/v1/jobs/${jobId}` })).statusCode).toBe(200);
    // The subscription is gone: a direct send to it is refused as unknown.
    await expect(
      app!.backends.bus.sendTo('split', { id: 'x', topic: 'file.uploaded', body: '' }),
    ).rejects.toMatchObject({ code: 'not_found' });
    expectError(await inject({ method: 'DELETE', url: '/v1/modules/split' }), 404, 'not_found');
    expectError(await inject({ method: 'DELETE', url: '/v1/modules/nope' }), 404, 'not_found');
  });
});

describe('bulk dead-letter routes', () => {
  it('refuses an empty selector, ids together with all, and unknown fields with 400', async () => {
    await startApp(NO_WORKERS);
    for (const url of ['/v1/dead-letters/redrive', '/v1/dead-letters/discard']) {
      expectError(await inject({ method: 'POST', url, payload: {} }), 400, 'validation_failed');
      expectError(
        await inject({ method: 'POST', url, payload: { ids: [] } }),
        400,
        'validation_failed',
      );
      expectError(
        await inject({ method: 'POST', url, payload: { all: false } }),
        400,
        'validation_failed',
      );
      expectError(
        await inject({ method: 'POST', url, payload: { ids: ['a'], all: true } }),
        400,
        'validation_failed',
      );
      expectError(
        await inject({ method: 'POST', url, payload: { everything: true } }),
        400,
        'validation_failed',
      );
    }
  });

  it('redrives a list of ids (unknown ones skipped), then all of a module, then all', async () => {
    await startApp(NO_WORKERS);
    await apply([module('split'), module('merge')]);
    const s1 = await deadLetter('split');
    const s2 = await deadLetter('split');
    const s3 = await deadLetter('split');
    const m1 = await deadLetter('merge');

    const byIds = await inject({
      method: 'POST',
      url: '/v1/dead-letters/redrive',
      payload: { ids: [s1, 'nope'] },
    });
    expect(byIds.statusCode, byIds.body).toBe(200);
    const body = byIds.json<{ redriven: number; jobs: { jobId: string; state: string }[] }>();
    expect(body.redriven).toBe(1);
    expect(body.jobs).toMatchObject([{ jobId: s1, state: 'pending' }]);

    const ofModule = await inject({
      method: 'POST',
      url: '/v1/dead-letters/redrive',
      payload: { module: 'split' },
    });
    expect(ofModule.json()).toMatchObject({ redriven: 2 });
    expect(await deadLetterIds()).toEqual([m1]);
    expect(
      (await inject({ method: 'GET', url: `/v1/jobs/${s2}` })).json<{ job: { state: string } }>()
        .job.state,
    ).toBe('pending');

    const all = await inject({
      method: 'POST',
      url: '/v1/dead-letters/redrive',
      payload: { all: true },
    });
    expect(all.json()).toMatchObject({ redriven: 1, jobs: [{ jobId: m1 }] });
    expect(await deadLetterIds()).toEqual([]);
    expect(s3).toBeDefined();
  });

  it('discards by ids within a module, all of a module, and all', async () => {
    await startApp(NO_WORKERS);
    await apply([module('split'), module('merge')]);
    const s1 = await deadLetter('split');
    const s2 = await deadLetter('split');
    const m1 = await deadLetter('merge');
    const m2 = await deadLetter('merge');

    // An id of another module is not touched when a module is given too.
    const scoped = await inject({
      method: 'POST',
      url: '/v1/dead-letters/discard',
      payload: { ids: [s1, m1], module: 'split' },
    });
    expect(scoped.json()).toEqual({ discarded: 1 });
    expect(await deadLetterIds()).toEqual([s2, m1, m2].sort());

    const ofModule = await inject({
      method: 'POST',
      url: '/v1/dead-letters/discard',
      payload: { all: true, module: 'merge' },
    });
    expect(ofModule.json()).toEqual({ discarded: 2 });
    expect(await deadLetterIds()).toEqual([s2]);

    const all = await inject({
      method: 'POST',
      url: '/v1/dead-letters/discard',
      payload: { all: true },
    });
    expect(all.json()).toEqual({ discarded: 1 });
    expect(await deadLetterIds()).toEqual([]);
    // The jobs themselves stay dead-lettered: discarding drops the dead letter only.
    expect(
      (await inject({ method: 'GET', url: `/v1/jobs/${s1}` })).json<{ job: { state: string } }>()
        .job.state,
    ).toBe('dead_lettered');
  });
});

describe('pausing stops dispatch (workers on)', () => {
  it('starts no job of a paused module; after resume the waiting event runs', async () => {
    await startApp({ api: true, relay: true, workers: true });
    await apply([module('split')]);
    await waitFor('the dispatcher of split to start', () =>
      logLines.some((l) => l.includes('"module":"split"') && l.includes('dispatching module'))
        ? true
        : undefined,
    );
    expect((await inject({ method: 'POST', url: '/v1/modules/split/pause' })).statusCode).toBe(200);
    await waitFor('the dispatcher of split to stop', () =>
      logLines.some((l) => l.includes('"module":"split"') && l.includes('stopping its dispatcher'))
        ? true
        : undefined,
    );
    const eventId = await publish();
    const jobId = jobIdFor('split', eventId);

    // Asserting an absence: poll for a bounded 1.5 s that no job of the event appears.
    const until = Date.now() + 1500;
    while (Date.now() < until) {
      expect((await inject({ method: 'GET', url: `/v1/jobs/${jobId}` })).statusCode).toBe(404);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }

    expect((await inject({ method: 'POST', url: '/v1/modules/split/resume' })).statusCode).toBe(
      200,
    );
    const job = await waitFor(
      'the job to succeed after resume',
      async () => {
        const res = await inject({ method: 'GET', url: `/v1/jobs/${jobId}` });
        if (res.statusCode !== 200) return undefined;
        const { job } = res.json<{ job: { state: string; moduleVersion: number } }>();
        return job.state === 'succeeded' ? job : undefined;
      },
      20_000,
    );
    expect(job.moduleVersion).toBe(1);
  });
});
