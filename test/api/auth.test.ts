import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { promisify } from 'node:util';
import BetterSqlite3 from 'better-sqlite3';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { requiredScope } from '../../src/api/auth.js';
import { IonApp } from '../../src/app/ion-app.js';
import { createLogger } from '../../src/app/logger.js';
import { loadConfig } from '../../src/config/config.js';
import { hashToken, type Scope } from '../../src/core/tokens.js';

const run = promisify(execFile);

interface Running {
  app: IonApp;
  dir: string;
  url: string;
  log: () => string;
}

const running: Running[] = [];

/** An Ion API (relay, no workers) on a temp dir, its pino output captured in memory. */
async function start(auth: 'on' | 'off', dir?: string): Promise<Running> {
  const dataDir = dir ?? (await mkdtemp(join(tmpdir(), 'ion-auth-')));
  const config = loadConfig({ flags: { dataDir, api: { port: 0, auth } } });
  const chunks: Buffer[] = [];
  const sink = new PassThrough();
  sink.on('data', (c: Buffer) => chunks.push(c));
  const app = await IonApp.create(
    config,
    createLogger('trace', sink),
    { api: true, relay: true, workers: false },
    {},
  );
  const url = (await app.start())!;
  const r = { app, dir: dataDir, url, log: () => Buffer.concat(chunks).toString('utf8') };
  running.push(r);
  return r;
}

afterEach(async () => {
  for (const r of running.splice(0)) {
    await r.app.stop();
    await rm(r.dir, { recursive: true, force: true });
  }
});

function inject(r: Running, opts: InjectOptions): Promise<LightMyRequestResponse> {
  return r.app.server!.inject(opts);
}

function expectError(res: LightMyRequestResponse, status: number, code: string): void {
  expect(res.statusCode, `${res.statusCode} ${res.body}`).toBe(status);
  const body = res.json<{ error: { code: string; message: string } }>();
  expect(Object.keys(body)).toEqual(['error']);
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message']);
  expect(body.error.code).toBe(code);
  expect(body.error.message.length).toBeGreaterThan(0);
}

async function token(r: Running, scopes: Scope[]): Promise<{ id: string; token: string }> {
  const { token: value, record } = await r.app.tokens.create({ name: scopes.join('+'), scopes });
  return { id: record.id, token: value };
}

const bearer = (value: string) => ({ authorization: `Bearer ${value}` });

/** Every route of the API, read from its OpenAPI document, with concrete URLs. */
async function routes(r: Running): Promise<{ method: string; pattern: string; url: string }[]> {
  const res = await inject(r, { method: 'GET', url: '/openapi.json' });
  expect(res.statusCode).toBe(200);
  const doc = res.json<{ paths: Record<string, Record<string, unknown>> }>();
  const out = [];
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const method of Object.keys(ops)) {
      if (!['get', 'post', 'put', 'patch', 'delete'].includes(method)) continue;
      out.push({
        method: method.toUpperCase(),
        pattern: path.replace(/\{(\w+)\}/g, ':$1'),
        // 64 hex digits satisfy every id parameter, blob digests included.
        url: path.replace(/\{\w+\}/g, '0'.repeat(64)),
      });
    }
  }
  return out;
}

/** A token that lacks the scope a route needs. */
function wrongScopes(needed: Scope): Scope[] {
  return needed === 'admin' ? ['publish', 'read'] : needed === 'publish' ? ['read'] : ['publish'];
}

/**
 * The status of a request that passed authentication. Uses real HTTP and stops at the
 * response headers, so a streaming route (live stream, followed logs) does not hold the test.
 */
async function statusOver(r: Running, method: string, url: string, value: string) {
  const controller = new AbortController();
  const res = await fetch(`${r.url}${url}`, {
    method,
    headers: {
      ...bearer(value),
      ...(method === 'GET' || method === 'DELETE' ? {} : { 'content-type': 'application/json' }),
    },
    ...(method === 'GET' || method === 'DELETE' ? {} : { body: '{}' }),
    signal: controller.signal,
  });
  const status = res.status;
  controller.abort();
  return status;
}

describe('route scopes', () => {
  it('maps the routes to the scopes docs/auth.md lists, and unknown routes by method', () => {
    expect(requiredScope('GET', '/healthz')).toBe('open');
    expect(requiredScope('GET', '/readyz')).toBe('open');
    expect(requiredScope('GET', '/metrics')).toBe('open');
    expect(requiredScope('POST', '/v1/events')).toBe('publish');
    expect(requiredScope('PUT', '/v1/blobs')).toBe('publish');
    expect(requiredScope('POST', '/v1/gateway/:eventType')).toBe('publish');
    expect(requiredScope('GET', '/v1/events/:eventId')).toBe('read');
    expect(requiredScope('GET', '/v1/jobs/:jobId/logs')).toBe('read');
    expect(requiredScope('POST', '/v1/pipelines/apply')).toBe('admin');
    expect(requiredScope('POST', '/v1/dead-letters/:id/redrive')).toBe('admin');
    expect(requiredScope('DELETE', '/v1/dead-letters/:id')).toBe('admin');
    expect(requiredScope('GET', '/v1/tokens')).toBe('admin');
    expect(requiredScope('POST', '/v1/tokens')).toBe('admin');
    expect(requiredScope('DELETE', '/v1/tokens/:id')).toBe('admin');
    expect(requiredScope('GET', '/v1/something-new')).toBe('read');
    expect(requiredScope('PATCH', '/v1/something-new')).toBe('admin');
    expect(requiredScope('POST', '/v1/jobs/:jobId/cancel', 'publish')).toBe('publish');
  });
});

describe('the api.auth setting', () => {
  it('takes the command default, then the config file, then ION_AUTH', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ion-auth-config-'));
    try {
      const file = join(dir, 'ion.yaml');
      await writeFile(file, 'api:\n  auth: off\n');
      const defaults = { api: { auth: 'on' } };
      expect(loadConfig({ defaults }).api.auth).toBe('on');
      expect(loadConfig({ defaults, file }).api.auth).toBe('off');
      expect(loadConfig({ defaults, file, env: { ION_AUTH: 'on' } }).api.auth).toBe('on');
      expect(loadConfig().api.auth).toBe('off');
      expect(() => loadConfig({ env: { ION_AUTH: 'yes' } })).toThrow(/api\.auth/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('with auth on', () => {
  it('refuses every route without a valid token of the right scope, and accepts the right one', async () => {
    const r = await start('on');
    const admin = await token(r, ['admin']);
    const revoked = await token(r, ['admin']);
    await r.app.tokens.revoke(revoked.id);
    const byScope: Record<Scope, { token: string }> = {
      admin,
      publish: await token(r, ['publish']),
      read: await token(r, ['read']),
    };
    const wrong: Record<Scope, { token: string }> = {
      admin: await token(r, wrongScopes('admin')),
      publish: await token(r, wrongScopes('publish')),
      read: await token(r, wrongScopes('read')),
    };
    const all = await routes(r);
    // The document lists the routes of the API, token routes included.
    expect(all.map((x) => `${x.method} ${x.pattern}`)).toEqual(
      expect.arrayContaining([
        'POST /v1/events',
        'PUT /v1/blobs',
        'GET /v1/jobs',
        'POST /v1/pipelines/apply',
        'POST /v1/tokens',
        'GET /v1/tokens',
        'DELETE /v1/tokens/:id',
      ]),
    );
    let checked = 0;
    for (const route of all) {
      const scope = requiredScope(route.method, route.pattern);
      if (scope === 'open' || scope === null) continue;
      const call = (headers: Record<string, string>) =>
        inject(r, { method: route.method, url: route.url, headers });
      const what = `${route.method} ${route.url}`;
      expectError(await call({}), 401, 'unauthorized');
      expectError(await call(bearer(`ion_${'A'.repeat(43)}`)), 401, 'unauthorized');
      expectError(await call(bearer('not-even-a-token')), 401, 'unauthorized');
      expectError(await call({ authorization: `Basic ${admin.token}` }), 401, 'unauthorized');
      expectError(await call(bearer(revoked.token)), 401, 'unauthorized');
      expectError(await call(bearer(wrong[scope].token)), 403, 'forbidden');
      for (const value of [byScope[scope].token, admin.token]) {
        const status = await statusOver(r, route.method, route.url, value);
        expect([401, 403], `${what} with scope ${scope}`).not.toContain(status);
      }
      checked++;
    }
    expect(checked).toBeGreaterThanOrEqual(10);
  });

  it('keeps /healthz open', async () => {
    const r = await start('on');
    const res = await inject(r, { method: 'GET', url: '/healthz' });
    expect(res.statusCode).toBe(200);
  });

  it('lets an admin create, list and revoke tokens over the API; the value is shown once', async () => {
    const r = await start('on');
    const admin = await token(r, ['admin']);
    const created = await inject(r, {
      method: 'POST',
      url: '/v1/tokens',
      headers: bearer(admin.token),
      payload: { name: 'uploader', scopes: ['publish'] },
    });
    expect(created.statusCode, created.body).toBe(201);
    const body = created.json<{ token: string; id: string; scopes: string[] }>();
    expect(body.token).toMatch(/^ion_[A-Za-z0-9_-]{43}$/);
    expect(body.scopes).toEqual(['publish']);

    const publish = await inject(r, {
      method: 'POST',
      url: '/v1/events',
      headers: bearer(body.token),
      payload: { type: 'file.uploaded', data: { a: '1' } },
    });
    expect(publish.statusCode, publish.body).toBe(201);

    const listed = await inject(r, {
      method: 'GET',
      url: '/v1/tokens',
      headers: bearer(admin.token),
    });
    expect(listed.statusCode).toBe(200);
    expect(listed.body).not.toContain(body.token);
    expect(listed.body).not.toContain(hashToken(body.token));
    const views = listed.json<{ tokens: { id: string; lastUsedAt: string | null }[] }>().tokens;
    expect(views.find((t) => t.id === body.id)?.lastUsedAt).not.toBeNull();

    const revoke = await inject(r, {
      method: 'DELETE',
      url: `/v1/tokens/${body.id}`,
      headers: bearer(admin.token),
    });
    expect(revoke.statusCode).toBe(200);
    expect(revoke.json<{ revokedAt: string | null }>().revokedAt).not.toBeNull();
    expectError(
      await inject(r, {
        method: 'POST',
        url: '/v1/events',
        headers: bearer(body.token),
        payload: { type: 'file.uploaded' },
      }),
      401,
      'unauthorized',
    );
    expectError(
      await inject(r, {
        method: 'DELETE',
        url: '/v1/tokens/00000000-0000-0000-0000-000000000000',
        headers: bearer(admin.token),
      }),
      404,
      'not_found',
    );
    expectError(
      await inject(r, {
        method: 'POST',
        url: '/v1/tokens',
        headers: bearer(admin.token),
        payload: { name: 'x', scopes: ['root'] },
      }),
      400,
      'validation_failed',
    );
  });

  it('never writes a token value to the log, and stores only its hash', async () => {
    const r = await start('on');
    const admin = await token(r, ['admin']);
    const read = await token(r, ['read']);
    const revoked = await token(r, ['read']);
    await r.app.tokens.revoke(revoked.id);
    const values = [admin.token, read.token, revoked.token];
    for (const value of values) {
      await inject(r, { method: 'GET', url: '/v1/modules', headers: bearer(value) });
      await inject(r, { method: 'POST', url: '/v1/pipelines/apply', headers: bearer(value) });
    }
    // Code that logs a request's headers (say, on a failure) gets the token redacted.
    r.app.server!.log.error({ headers: bearer(admin.token) }, 'probe');
    const log = r.log();
    expect(log).toContain('probe');
    expect(log).toContain('[redacted]');
    for (const value of values) expect(log).not.toContain(value);

    await r.app.stop();
    const db = new BetterSqlite3(join(r.dir, 'store.db'), { readonly: true });
    try {
      const rows = db.prepare('SELECT * FROM api_tokens').all();
      const dump = JSON.stringify(rows);
      for (const value of values) {
        expect(dump).not.toContain(value);
        expect(dump).toContain(hashToken(value));
      }
    } finally {
      db.close();
    }
    // Nor anywhere in the database files (WAL included), in any form the store writes.
    const files = (await readdir(r.dir)).filter((f) => f.startsWith('store.db'));
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) {
      const bytes = await readFile(join(r.dir, file));
      for (const value of values) expect(bytes.includes(value)).toBe(false);
    }
  });
});

describe('with auth off', () => {
  it('serves every route without a token', async () => {
    const r = await start('off');
    expect((await inject(r, { method: 'GET', url: '/v1/modules' })).statusCode).toBe(200);
    const applied = await inject(r, {
      method: 'POST',
      url: '/v1/pipelines/apply',
      payload: {
        pipeline: {
          modules: [{ name: 'a', subscribes: ['x.y'], publishes: [], run: { command: ['true'] } }],
        },
      },
    });
    expect(applied.statusCode, applied.body).toBe(200);
    const published = await inject(r, {
      method: 'POST',
      url: '/v1/events',
      payload: { type: 'x.y' },
    });
    expect(published.statusCode, published.body).toBe(201);
    for (const route of await routes(r)) {
      const status = await statusOver(r, route.method, route.url, 'ignored');
      expect([401, 403], `${route.method} ${route.url}`).not.toContain(status);
    }
  });
});

describe('ion token (CLI)', () => {
  it('creates the first admin token offline, which then opens a server with auth on', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ion-auth-cli-'));
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith('ION_')),
    );
    const cli = (...args: string[]) =>
      run(process.execPath, ['bin/ion.js', 'token', ...args, '--data-dir', dir], { env });
    const created = await cli('create', '--name', 'ops', '--scope', 'admin', '--json');
    const { token: value, id } = JSON.parse(created.stdout) as { token: string; id: string };
    expect(value).toMatch(/^ion_/);

    const r = await start('on', dir);
    expect(
      (await inject(r, { method: 'GET', url: '/v1/modules', headers: bearer(value) })).statusCode,
    ).toBe(200);

    const listed = await cli('ls');
    expect(listed.stdout).toContain(id);
    expect(listed.stdout).not.toContain(value);

    await cli('revoke', id);
    expectError(
      await inject(r, { method: 'GET', url: '/v1/modules', headers: bearer(value) }),
      401,
      'unauthorized',
    );

    const bad = await cli('create', '--name', 'x', '--scope', 'root').then(
      () => null,
      (err: { code: number; stderr: string }) => err,
    );
    expect(bad?.code).toBe(2);
    expect(bad?.stderr).toContain('unknown scope');
  });
});
