import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normaliseReason, fingerprint } from '../../src/api/failure-groups.js';
import { buildServer } from '../../src/api/server.js';
import { createLogger } from '../../src/app/logger.js';
import type { IonEvent, Job } from '../../src/core/types.js';
import {
  deadLetterJob,
  expectError,
  runChild,
  startApiApp,
  type ApiApp,
} from '../support/api-app.js';

let api: ApiApp;
let root: IonEvent;

async function inject(url: string, method: 'GET' | 'POST' = 'GET', payload?: object) {
  return api.app.server!.inject({ method, url, ...(payload === undefined ? {} : { payload }) });
}

async function publish(type: string): Promise<IonEvent> {
  const res = await inject('/v1/events', 'POST', { type });
  return (await api.app.backends.store.getEvent(res.json<{ eventId: string }>().eventId))!;
}

/** A job of `module` on `event` whose only attempt fails for good with `error`. */
function deadLetter(module: string, event: IonEvent, error: string, logTail: string) {
  return deadLetterJob(api.app.backends.store, event, module, {
    error,
    logTail,
    reason: error,
    exitCode: 3,
  });
}

beforeAll(async () => {
  api = await startApiApp('ion-dashboard-', 1024 * 1024);
  root = await publish('doc');
  // 250 jobs, many of them changed in the same millisecond: pages must neither skip nor repeat.
  for (let i = 0; i < 250; i++)
    await runChild(
      api.app.backends.store,
      root,
      `m${i}`,
      i % 50 === 0 ? [{ key: 'object', value: 'red car' }] : [],
    );
});

afterAll(async () => {
  await api.stop();
});

describe('GET /v1/dashboard/jobs', () => {
  it('pages through every job exactly once, newest change first', async () => {
    const seen: Job[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 100; page++) {
      const q = cursor === null ? '' : `&cursor=${cursor}`;
      const res = await inject(`/v1/dashboard/jobs?limit=7${q}`);
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json<{ jobs: Job[]; nextCursor: string | null }>();
      expect(body.jobs.length).toBeLessThanOrEqual(7);
      seen.push(...body.jobs);
      cursor = body.nextCursor;
      if (cursor === null) break;
    }
    expect(cursor).toBeNull();
    expect(seen).toHaveLength(250);
    expect(new Set(seen.map((j) => j.jobId)).size).toBe(250);
    for (let i = 1; i < seen.length; i++)
      expect(seen[i - 1]!.updatedAt >= seen[i]!.updatedAt).toBe(true);
  });

  it('filters by module and by an insight key and value', async () => {
    const byModule = (await inject('/v1/dashboard/jobs?module=m3')).json<{ jobs: Job[] }>();
    expect(byModule.jobs.map((j) => j.module)).toEqual(['m3']);
    const res = await inject('/v1/dashboard/jobs?insightKey=object&insightValue=red%20car&limit=2');
    const first = res.json<{ jobs: Job[]; nextCursor: string | null }>();
    expect(first.jobs).toHaveLength(2);
    expect(first.nextCursor).not.toBeNull();
    const rest = (
      await inject(
        `/v1/dashboard/jobs?insightKey=object&insightValue=red%20car&cursor=${first.nextCursor}`,
      )
    ).json<{ jobs: Job[] }>();
    const modules = [...first.jobs, ...rest.jobs].map((j) => j.module).sort();
    expect(modules).toEqual(['m0', 'm100', 'm150', 'm200', 'm50']);
  });

  it('refuses a cursor it did not make, and an insight value without a key', async () => {
    expectError(
      await inject('/v1/dashboard/jobs?cursor=bm90LWEtY3Vyc29y'),
      400,
      'validation_failed',
    );
    expectError(await inject('/v1/dashboard/jobs?cursor=%2F%2F'), 400, 'validation_failed');
    expectError(await inject('/v1/dashboard/jobs?insightValue=x'), 400, 'validation_failed');
    expectError(await inject('/v1/dashboard/jobs?limit=0'), 400, 'validation_failed');
  });
});

describe('GET /v1/dashboard/modules', () => {
  it('counts running, waiting, failed and dead-lettered jobs per module', async () => {
    await inject('/v1/pipelines/apply', 'POST', {
      pipeline: { modules: [{ name: 'm1', subscribes: ['doc'], run: { command: ['true'] } }] },
    });
    const body = (await inject('/v1/dashboard/modules')).json<{
      cap: number;
      counts: Record<string, Record<string, number>>;
    }>();
    expect(body.cap).toBe(1000);
    expect(body.counts.m1).toEqual({ pending: 0, running: 0, failed: 0, dead_lettered: 0 });
  });
});

describe('failure groups', () => {
  it('normalises ids, numbers and paths out of a reason', () => {
    expect(
      normaliseReason(
        'exit 3 on /tmp/job-12/in/data/a.txt for 0f8e2a7c-1111-2222-3333-444455556666',
      ),
    ).toBe('exit <n> on <path> for <id>');
    expect(fingerprint('exit code 3', 'boom')).toBe(fingerprint('exit code 4', 'boom'));
    expect(fingerprint('exit code 3', 'boom')).not.toBe(fingerprint('exit code 3', 'other'));
  });

  it('groups dead letters by module and fingerprint, previews and redrives a whole group', async () => {
    const a = await deadLetter(
      'frag',
      await publish('f'),
      'module exited with code 3',
      'x\nboom: config 1 missing\n',
    );
    const b = await deadLetter(
      'frag',
      await publish('f'),
      'module exited with code 3',
      'y\nboom: config 2 missing\n',
    );
    await deadLetter('frag', await publish('f'), 'module exited with code 3', 'something else\n');
    const groups = (await inject('/v1/dashboard/failures?module=frag')).json<{
      groups: {
        fingerprint: string;
        count: number;
        kind: string;
        logLine: string;
        jobIds: string[];
      }[];
    }>().groups;
    expect(groups.map((g) => g.count).sort()).toEqual([1, 2]);
    const two = groups.find((g) => g.count === 2)!;
    expect(two.kind).toBe('module');
    expect(two.jobIds.sort()).toEqual([a, b].sort());
    expect(two.logLine).toMatch(/^boom: config \d missing$/);

    const body = { module: 'frag', fingerprint: two.fingerprint, action: 'redrive' };
    const preview = (
      await inject('/v1/dashboard/failures/act', 'POST', { ...body, dryRun: true })
    ).json<{
      jobIds: string[];
      touched: number;
    }>();
    expect(preview.jobIds.sort()).toEqual([a, b].sort());
    expect(preview.touched).toBe(0);
    expect((await api.app.backends.store.getJob(a))!.state).toBe('dead_lettered');

    const done = (await inject('/v1/dashboard/failures/act', 'POST', body)).json<{
      touched: number;
    }>();
    expect(done.touched).toBe(2);
    expect((await api.app.backends.store.getJob(a))!.state).toBe('pending');
    expect((await api.app.backends.store.getJob(b))!.state).toBe('pending');
    const after = (await inject('/v1/dashboard/failures?module=frag')).json<{
      groups: { count: number }[];
    }>();
    expect(after.groups.map((g) => g.count)).toEqual([1]);
  });

  it('refuses an unknown action', async () => {
    const res = await inject('/v1/dashboard/failures/act', 'POST', {
      module: 'x',
      fingerprint: 'y',
      action: 'delete',
    });
    expectError(res, 400, 'validation_failed');
  });
});

describe('the dashboard files at /ui', () => {
  let dir: string;
  let server: ReturnType<typeof buildServer>;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ion-ui-'));
    await mkdir(join(dir, 'web/assets'), { recursive: true });
    await writeFile(join(dir, 'web/index.html'), '<!doctype html><title>ui</title>');
    await writeFile(join(dir, 'web/assets/app-1.js'), 'console.log(1)');
    await writeFile(join(dir, 'secret.txt'), 'TOP-SECRET-CONTENT');
    await symlink(join(dir, 'secret.txt'), join(dir, 'web/assets/link.txt'));
    server = buildServer({
      control: api.app.control,
      logger: createLogger('silent'),
      uiDir: join(dir, 'web'),
    });
  });

  afterAll(async () => {
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves the page with a Content-Security-Policy, and app paths get the page too', async () => {
    for (const url of ['/ui', '/ui/', '/ui/jobs/abc', '/ui/traces/x?y=1']) {
      const res = await server.inject({ url });
      expect(res.statusCode, url).toBe(200);
      expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(res.headers['content-security-policy']).toContain("script-src 'self'");
      expect(res.headers['content-security-policy']).toContain("frame-ancestors 'none'");
      expect(res.body).toContain('<title>ui</title>');
    }
  });

  it('serves built assets with their content type, cached for good', async () => {
    const res = await server.inject({ url: '/ui/assets/app-1.js' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(res.headers['cache-control']).toContain('immutable');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
  });

  it('never serves a file outside its folder', async () => {
    for (const url of [
      '/ui/assets/../../secret.txt',
      '/ui/%2e%2e/secret.txt',
      '/ui/assets/%2e%2e%2f%2e%2e%2fsecret.txt',
      '/ui/assets/link.txt',
      '/ui/assets/nope.js',
    ]) {
      const res = await server.inject({ url });
      expect(res.statusCode, url).toBe(404);
      expect(res.body).not.toContain('TOP-SECRET-CONTENT');
    }
  });

  it('says how to build the dashboard when it was not built', async () => {
    const bare = buildServer({
      control: api.app.control,
      logger: createLogger('silent'),
      uiDir: join(dir, 'none'),
    });
    const res = await bare.inject({ url: '/ui' });
    expect(res.statusCode).toBe(503);
    expect(res.body).toContain('npm install');
    expect(res.body).toContain('npm run build:web');
    await bare.close();
  });
});
