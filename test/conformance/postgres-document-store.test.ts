import { randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { IonError, UnavailableError, ValidationError } from '../../src/core/errors.js';
import { jobIdFor } from '../../src/core/ids.js';
import type { IonEvent, ModuleSpec } from '../../src/core/types.js';
import { PostgresDocumentStore } from '../../src/store/postgres/postgres-document-store.js';
import { MIGRATIONS } from '../../src/store/postgres/schema.js';
import { documentStoreConformance } from './document-store.suite.js';

/**
 * Runs against a real PostgreSQL server (ION_TEST_POSTGRES_URL, default the loopback test
 * database). No skip: an unreachable server fails these tests. Each store gets its own random
 * schema, dropped afterwards, so runs never see each other's rows.
 */
const URL = process.env.ION_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

function freshSchema(): string {
  return `ion_test_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
}

/** A short-lived admin connection, for what the port does not expose (catalog, kills). */
async function admin<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: URL });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

function dropSchema(schema: string): Promise<void> {
  return admin(async (c) => {
    await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  });
}

/** Polls `check` until it holds or the deadline passes (no sleeps as synchronisation). */
async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

documentStoreConformance('PostgresDocumentStore', async () => {
  const schema = freshSchema();
  const store = new PostgresDocumentStore({ url: URL, schema, poolSize: 4 });
  await store.start();
  return {
    store,
    cleanup: async () => {
      await store.close();
      await dropSchema(schema);
    },
  };
});

describe('PostgresDocumentStore on a real server', () => {
  const schemas: string[] = [];
  const stores: PostgresDocumentStore[] = [];

  function open(schema: string, extra: Partial<{ applicationName: string }> = {}) {
    if (!schemas.includes(schema)) schemas.push(schema);
    const warnings: string[] = [];
    const store = new PostgresDocumentStore({
      url: URL,
      schema,
      poolSize: 4,
      logger: { warn: (_obj, msg) => warnings.push(msg ?? '') },
      ...extra,
    });
    stores.push(store);
    return { store, warnings };
  }

  afterEach(async () => {
    await Promise.all(stores.splice(0).map((s) => s.close()));
    for (const schema of schemas.splice(0)) await dropSchema(schema);
  });

  function event(): IonEvent {
    return {
      eventId: randomUUID(),
      type: 'gateway.new_link',
      correlationId: randomUUID(),
      parentEventId: null,
      source: 'api',
      sourceJobId: null,
      data: [
        { key: 'url', value: 'https://example.com' },
        { key: 'a', value: 'second' },
      ],
      files: [],
      createdAt: new Date().toISOString(),
    };
  }

  const downloader: ModuleSpec = {
    name: 'downloader',
    subscribes: ['gateway.new_link'],
    publishes: [],
    executor: 'local',
    run: { command: ['node', 'dl.js'], cwd: '/srv' },
    retries: 1,
    timeoutMs: 1000,
    concurrency: 2,
    env: { Z: 'last', A: 'first' },
  };

  it('applies each migration once when several stores start on one schema at once', async () => {
    const schema = freshSchema();
    const opened = [1, 2, 3, 4].map(() => open(schema).store);
    await Promise.all(opened.map((s) => s.start()));

    const rows = await admin(async (c) => {
      const res = await c.query<{ version: number }>(
        `SELECT version FROM "${schema}".schema_migrations ORDER BY version`,
      );
      return res.rows.map((r) => r.version);
    });
    expect(rows).toEqual(MIGRATIONS.map((m) => m.version));
    expect(await opened[3]!.modulesRevision()).toBe(0);
  });

  it('numbers concurrent attempts of one job from two stores 1 and 2, never twice the same', async () => {
    const schema = freshSchema();
    const a = open(schema).store;
    const b = open(schema).store;
    await a.start();
    await b.start();

    for (let i = 0; i < 10; i++) {
      const e = event();
      await a.insertRootEvent(e);
      const module = `mod-${randomUUID()}`;
      const jobId = jobIdFor(module, e.eventId);
      const begin = (store: PostgresDocumentStore, workerId: string) =>
        store.beginAttempt({
          jobId,
          module,
          moduleVersion: 1,
          event: e,
          workerId,
          startedAt: new Date().toISOString(),
          leaseUntil: new Date(0).toISOString(), // lapsed already: the second closes the first
        });
      const results = await Promise.all([begin(a, 'wa'), begin(b, 'wb')]);
      const numbers = results.map((r) => (r.status === 'started' ? r.attempt : 0));
      expect(numbers.sort()).toEqual([1, 2]);

      const attempts = await b.listAttempts(jobId);
      expect(attempts.map((x) => [x.attempt, x.outcome])).toEqual([
        [1, 'failed'],
        [2, 'running'],
      ]);
      expect(attempts[0]?.errorCode).toBe('worker_lost');
      expect((await a.getJob(jobId))?.attempts).toBe(2);
    }
  });

  it('creates a module once when two stores upsert it at the same time', async () => {
    const schema = freshSchema();
    const a = open(schema).store;
    const b = open(schema).store;
    await a.start();
    await b.start();

    const results = await Promise.all([a.upsertModule(downloader), b.upsertModule(downloader)]);
    expect(results.map((r) => r.change).sort()).toEqual(['created', 'unchanged']);
    expect(results.map((r) => r.module.version)).toEqual([1, 1]);
    expect(await a.modulesRevision()).toBe(1);
  });

  it('keeps its data across close and reopen', async () => {
    const schema = freshSchema();
    const first = open(schema).store;
    await first.start();
    const e = event();
    await first.insertRootEvent(e);
    const mod = await first.upsertModule(downloader);
    await first.close();
    await first.close();

    const second = open(schema).store;
    await second.start();
    expect(await second.getEvent(e.eventId)).toEqual(e);
    expect((await second.getEvent(e.eventId))?.data).toEqual(e.data);
    expect(await second.getModule('downloader')).toEqual(mod.module);
    expect((await second.pendingOutbox(10)).map((r) => r.eventId)).toEqual([e.eventId]);
    expect((await second.upsertModule(mod.module)).change).toBe('unchanged');
  });

  it('rejects calls before start and after close with an IonError instead of a driver error', async () => {
    const { store } = open(freshSchema());
    await expect(store.getJob('x')).rejects.toBeInstanceOf(IonError);
    await store.start();
    await store.close();
    await expect(store.getJob('x')).rejects.toBeInstanceOf(IonError);
    await expect(store.markPublished([])).rejects.toBeInstanceOf(IonError);
  });

  it('fails to start with a retryable unavailable error when the server is unreachable', async () => {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
      });
    });
    const store = new PostgresDocumentStore({
      url: `postgres://postgres:hunter2@127.0.0.1:${port}/test`,
      connectTimeoutMs: 2000,
    });
    const err = await store.start().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as UnavailableError).retryable).toBe(true);
    expect((err as Error).message).toMatch(/^postgres-store: start failed/);
    expect((err as Error).message).not.toContain('hunter2');
    await store.close();
  });

  it('survives the server killing its idle connections', async () => {
    const applicationName = `ion-test-${randomUUID().slice(0, 8)}`;
    const { store, warnings } = open(freshSchema(), { applicationName });
    await store.start();
    await store.upsertModule(downloader);

    const killed = await admin(async (c) => {
      const res = await c.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1`,
        [applicationName],
      );
      return res.rowCount ?? 0;
    });
    expect(killed).toBeGreaterThan(0);
    await waitFor(() => warnings.length >= killed);
    expect(warnings[0]).toMatch(/idle connection failed/);
    expect((await store.getModule('downloader'))?.name).toBe('downloader');
  });

  it('rejects a schema name that is not a plain identifier', () => {
    expect(() => new PostgresDocumentStore({ url: URL, schema: 'ion"; DROP' })).toThrow(
      ValidationError,
    );
  });
});
