import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openSettlementOf } from '../../test/support/settlements.js';
import { waitFor } from '../../test/support/wait.js';
import { FsBlobStore } from '../blob/fs/fs-blob-store.js';
import { jobIdFor, settledEventId } from '../core/ids.js';
import type { TraceSummary } from '../core/trace-settled.js';
import type { IonEvent } from '../core/types.js';
import type { DocumentStore } from '../store/document-store.js';
import { SqliteDocumentStore } from '../store/sqlite/sqlite-document-store.js';
import { SettlementRelay } from './settlement-relay.js';

// Real embedded adapters (SQLite store, filesystem blobs); only a crash is simulated.
describe('SettlementRelay', () => {
  let dir: string;
  let store: SqliteDocumentStore;
  let blobs: FsBlobStore;
  const logger = pino({ level: 'silent' });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ion-settle-'));
    store = new SqliteDocumentStore({ path: join(dir, 'store.db') });
    blobs = new FsBlobStore({ dir: join(dir, 'blobs') });
    await store.start();
    await blobs.start();
  });
  afterEach(async () => {
    await store.close();
    await blobs.close();
    await rm(dir, { recursive: true, force: true });
  });

  function module(name: string, subscribes: string[]) {
    return store.upsertModule({
      name,
      subscribes,
      publishes: [],
      run: { command: ['true'] },
      retries: 0,
      timeoutMs: 1000,
      concurrency: 1,
      env: {},
    });
  }

  /** A trace with one module whose only job succeeded with an insight: settled, not raised. */
  async function settledTrace(summary = true): Promise<IonEvent> {
    await module('detect', ['video.uploaded']);
    if (summary) await module('summary', ['ion.trace.settled']);
    const eventId = randomUUID();
    const root: IonEvent = {
      eventId,
      type: 'video.uploaded',
      correlationId: eventId,
      parentEventId: null,
      source: 'api',
      sourceJobId: null,
      data: [{ key: 'video', value: 'v1.mp4' }],
      files: [],
      createdAt: new Date(Date.now() + 1000).toISOString(),
    };
    await store.insertRootEvent(root);
    const startedAt = new Date(Date.now() + 2000).toISOString();
    const jobId = jobIdFor('detect', eventId);
    await store.beginAttempt({
      jobId,
      module: 'detect',
      moduleVersion: 1,
      event: root,
      workerId: 'w',
      startedAt,
      leaseUntil: startedAt,
    });
    await store.commitAttempt({
      jobId,
      attempt: 1,
      finishedAt: startedAt,
      durationMs: 1,
      exitCode: 0,
      logTail: '',
      logBlob: null,
      insights: [{ key: 'label', value: 'cat' }],
      outputs: [],
      children: [],
    });
    expect(await openSettlementOf(store, root.correlationId)).toHaveLength(1);
    return root;
  }

  it('raises one event with trace.json, from one of two relays passing at once', async () => {
    const root = await settledTrace();
    let woken = 0;
    const relay = () => new SettlementRelay(store, blobs, logger, { onRaised: () => (woken += 1) });
    const [a, b] = await Promise.all([relay().raiseBatch(), relay().raiseBatch()]);
    // One claimed it and raised it; the other found nothing to claim.
    expect([a, b].sort()).toEqual([0, 1]);
    expect(woken).toBe(1);

    const trace = await store.trace(root.correlationId);
    const settled = trace.events.filter((e) => e.type === 'ion.trace.settled');
    expect(settled.map((e) => e.eventId)).toEqual([settledEventId(root.correlationId)]);
    expect(settled[0]!.data).toEqual([
      { key: 'video', value: 'v1.mp4' },
      { key: 'ion.rootEventId', value: root.eventId },
      { key: 'ion.rootEventType', value: 'video.uploaded' },
      { key: 'ion.jobs', value: '1' },
      { key: 'ion.succeeded', value: '1' },
      { key: 'ion.dead_lettered', value: '0' },
      { key: 'ion.cancelled', value: '0' },
    ]);
    const outbox = (await store.pendingOutbox(100)).filter(
      (o) => o.eventId === settled[0]!.eventId,
    );
    expect(outbox).toHaveLength(1);
    expect(await openSettlementOf(store, root.correlationId)).toEqual([]);

    const file = settled[0]!.files[0]!;
    expect(file.path).toBe('trace.json');
    const summary = JSON.parse(await text(await blobs.get(file.sha256))) as TraceSummary;
    expect(summary).toMatchObject({
      correlationId: root.correlationId,
      rootEventId: root.eventId,
      rootEventType: 'video.uploaded',
      counts: { succeeded: 1, jobs: 1 },
    });
    expect(summary.insights).toEqual([
      expect.objectContaining({ module: 'detect', key: 'label', value: 'cat' }),
    ]);
    expect(summary.jobs.map((j) => [j.module, j.state])).toEqual([['detect', 'succeeded']]);
  });

  it('takes over a settlement another relay claimed and died with, once the claim ends', async () => {
    const root = await settledTrace();
    const now = Date.now();
    const claim = { owner: 'dead-relay', limit: 10, now: new Date(now).toISOString() };
    const until = new Date(now + 2000).toISOString();
    expect(await store.claimSettlements({ ...claim, until })).toHaveLength(1);
    const relay = new SettlementRelay(store, blobs, logger);
    expect(await relay.raiseBatch()).toBe(0);
    await waitFor('the dead relay claim to end', async () =>
      (await relay.raiseBatch()) === 1 ? true : undefined,
    );
    expect((await store.getSettlement(root.correlationId))?.eventId).toBe(
      settledEventId(root.correlationId),
    );
  });

  it('closes the settlement without an event or a blob when no module subscribes to it', async () => {
    const root = await settledTrace(false);
    let woken = 0;
    const relay = new SettlementRelay(store, blobs, logger, { onRaised: () => (woken += 1) });
    expect(await relay.raiseBatch()).toBe(1);
    expect(await openSettlementOf(store, root.correlationId)).toEqual([]);
    expect(await store.getSettlement(root.correlationId)).toMatchObject({
      done: true,
      eventId: null,
    });
    const trace = await store.trace(root.correlationId);
    expect(trace.events.map((e) => e.type)).toEqual(['video.uploaded']);
    expect(woken).toBe(0);
  });

  it('raises the event on the next pass after a crash between the blob and the event', async () => {
    const root = await settledTrace();
    let crash = true;
    const crashing = new Proxy(store, {
      get(target, prop, receiver) {
        if (prop === 'recordSettledEvent' && crash) {
          return () => {
            crash = false;
            return Promise.reject(new Error('process died'));
          };
        }
        const value = Reflect.get(target, prop, receiver) as unknown;
        return typeof value === 'function' ? (value as () => unknown).bind(target) : value;
      },
    }) as DocumentStore;
    const relay = new SettlementRelay(crashing, blobs, logger);
    await expect(relay.raiseBatch()).rejects.toThrow('process died');
    expect(await openSettlementOf(store, root.correlationId)).toHaveLength(1);
    expect(await store.getEvent(settledEventId(root.correlationId))).toBeNull();

    expect(await relay.raiseBatch()).toBe(1);
    expect(await openSettlementOf(store, root.correlationId)).toEqual([]);
    expect((await store.getSettlement(root.correlationId))?.eventId).toBe(
      settledEventId(root.correlationId),
    );
    expect(await relay.raiseBatch()).toBe(0);
  });
});
