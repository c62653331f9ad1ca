import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IonError } from '../../src/core/errors.js';
import type { IonEvent } from '../../src/core/types.js';
import { SqliteDocumentStore } from '../../src/store/sqlite/sqlite-document-store.js';
import { documentStoreConformance } from './document-store.suite.js';

documentStoreConformance('sqlite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ion-store-'));
  const store = new SqliteDocumentStore({ path: join(dir, 'nested', 'ion.db') });
  await store.start();
  return { store, cleanup: () => rm(dir, { recursive: true, force: true }) };
});

describe('SqliteDocumentStore on a file', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ion-store-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  function event(): IonEvent {
    return {
      eventId: randomUUID(),
      type: 'gateway.new_link',
      correlationId: randomUUID(),
      parentEventId: null,
      source: 'api',
      sourceJobId: null,
      data: [{ key: 'url', value: 'https://example.com' }],
      files: [],
      createdAt: new Date().toISOString(),
    };
  }

  it('keeps its data across close and reopen', async () => {
    const path = join(dir, 'ion.db');
    const first = new SqliteDocumentStore({ path });
    await first.start();
    const e = event();
    await first.insertRootEvent(e);
    const mod = await first.upsertModule({
      name: 'downloader',
      subscribes: ['gateway.new_link'],
      publishes: [],
      executor: 'local',
      run: { command: ['node', 'dl.js'], cwd: '/srv' },
      retries: 1,
      timeoutMs: 1000,
      concurrency: 2,
      env: {},
    });
    await first.close();
    await first.close();

    const second = new SqliteDocumentStore({ path });
    await second.start();
    try {
      expect(await second.getEvent(e.eventId)).toEqual(e);
      expect(await second.getModule('downloader')).toEqual(mod.module);
      expect((await second.pendingOutbox(10)).map((r) => r.eventId)).toEqual([e.eventId]);
      expect((await second.upsertModule(mod.module)).change).toBe('unchanged');
    } finally {
      await second.close();
    }
  });

  it('shares one file between two open stores', async () => {
    const path = join(dir, 'shared.db');
    const a = new SqliteDocumentStore({ path });
    const b = new SqliteDocumentStore({ path });
    await a.start();
    await b.start();
    try {
      const e = event();
      expect((await a.insertRootEvent(e)).created).toBe(true);
      expect((await b.insertRootEvent(e)).created).toBe(false);
      expect(await b.pendingOutbox(10)).toHaveLength(1);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('rejects calls after close with an IonError instead of a driver error', async () => {
    const store = new SqliteDocumentStore({ path: ':memory:' });
    await store.start();
    await store.close();
    await expect(store.getJob('x')).rejects.toBeInstanceOf(IonError);
  });
});
