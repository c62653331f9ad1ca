import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../test/support/wait.js';
import { FsBlobStore } from '../blob/fs/fs-blob-store.js';
import type { Delivery } from '../bus/event-bus.js';
import { SqliteEventBus } from '../bus/sqlite/sqlite-event-bus.js';
import { jobIdFor } from '../core/ids.js';
import type { IonEvent } from '../core/types.js';
import { SqliteDocumentStore } from '../store/sqlite/sqlite-document-store.js';
import { keepAttemptLog, watchAttempt } from './attempt-progress.js';

function run(command: string, args: string[]): Promise<boolean> {
  return new Promise((resolve) => {
    execFile(command, args, (err) => resolve(err === null));
  });
}

/** Fills the filesystem under `dir` until ENOSPC. */
async function fill(dir: string): Promise<void> {
  await writeFile(join(dir, 'filler'), randomBytes(4 * 1024 * 1024)).catch(() => undefined);
}

describe('keepAttemptLog with the blob store on a full disk', () => {
  // A real full filesystem: a 1 MiB tmpfs holds the blob store (root can mount, as in CI).
  let blobDir: string;
  let scratch: string;
  let mounted = false;
  let blobs: FsBlobStore;
  let logFile: string;
  const log = randomBytes(64 * 1024);
  const logger = pino({ level: 'silent' });

  beforeEach(async () => {
    blobDir = await mkdtemp(join(tmpdir(), 'ion-keep-log-blobs-'));
    scratch = await mkdtemp(join(tmpdir(), 'ion-keep-log-'));
    mounted = await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', blobDir]);
    blobs = new FsBlobStore({ dir: blobDir });
    await blobs.start();
    logFile = join(scratch, 'logs', 'job-1', '1.log');
    await mkdir(join(scratch, 'logs', 'job-1'), { recursive: true });
    await writeFile(logFile, log);
  });

  afterEach(async () => {
    await blobs.close();
    if (mounted) await run('umount', [blobDir]);
    await rm(blobDir, { recursive: true, force: true });
    await rm(scratch, { recursive: true, force: true });
  });

  it('tries again while the disk is full and stores the log once it is freed', async (ctx) => {
    if (!mounted) ctx.skip(); // no mount here: not root, or no tmpfs
    await fill(blobDir);
    const waits: number[] = [];
    const sha = await keepAttemptLog(blobs, logger, logFile, (failures) => {
      waits.push(failures);
      if (failures === 2) rmSync(join(blobDir, 'filler')); // freed before the next try
      return 10;
    });
    expect(waits).toEqual([1, 2]); // two failures, then stored
    expect(sha).toBe(createHash('sha256').update(log).digest('hex'));
    const stored = join(blobDir, 'sha256', sha!.slice(0, 2), sha!.slice(2, 4), sha!);
    expect((await readFile(stored)).equals(log)).toBe(true);
    expect(existsSync(logFile)).toBe(false);
    expect(existsSync(join(scratch, 'logs', 'job-1'))).toBe(false);
  });

  it('gives up after a bounded number of tries and still removes the file', async (ctx) => {
    if (!mounted) ctx.skip();
    await fill(blobDir);
    const waits: number[] = [];
    const sha = await keepAttemptLog(blobs, logger, logFile, (failures) => {
      waits.push(failures);
      return 10;
    });
    expect(sha).toBeNull();
    expect(waits).toEqual([1, 2, 3, 4]);
    expect(existsSync(logFile)).toBe(false); // the tail is in the store; no file is left
  });
});

describe('keepAttemptLog', () => {
  it('stores nothing for an empty or missing log, and does not retry', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ion-keep-log-empty-'));
    const blobs = new FsBlobStore({ dir: join(dir, 'blobs') });
    await blobs.start();
    try {
      const empty = join(dir, 'empty.log');
      await writeFile(empty, '');
      const waits: number[] = [];
      const delay = (n: number): number => (waits.push(n), 10);
      const logger = pino({ level: 'silent' });
      expect(await keepAttemptLog(blobs, logger, empty, delay)).toBeNull();
      expect(existsSync(empty)).toBe(false);
      expect(await keepAttemptLog(blobs, logger, join(dir, 'missing.log'), delay)).toBeNull();
      expect(waits).toEqual([]);
    } finally {
      await blobs.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

// Real embedded adapters (SQLite store and bus); the delivery is the bus's own, counted.
describe('watchAttempt after a slow start', () => {
  const LEASE_MS = 60_000; // leases pushed out every 20 s
  let dir: string;
  let store: SqliteDocumentStore;
  let bus: SqliteEventBus;
  const consuming = new AbortController();

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ion-watch-'));
    store = new SqliteDocumentStore({ path: join(dir, 'store.db') });
    bus = new SqliteEventBus({ path: join(dir, 'bus.db') });
    await store.start();
    await bus.start();
  });
  afterEach(async () => {
    consuming.abort();
    await bus.close();
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('pushes both leases out at once when the start took a third of the lease', async () => {
    // The delivery came 30 s ago and the attempt's lease was taken then: half of both is
    // spent. Without a renewal now, the next one would come 20 s later, 10 s before the end.
    const heldSince = Date.now() - LEASE_MS / 2;
    const leaseUntil = new Date(heldSince + LEASE_MS).toISOString();
    const event: IonEvent = {
      eventId: 'e-slow',
      type: 'frame.ready',
      correlationId: 'e-slow',
      parentEventId: null,
      source: 'api',
      sourceJobId: null,
      data: [],
      files: [],
      createdAt: new Date(heldSince).toISOString(),
    };
    await store.insertRootEvent(event);
    await bus.ensureSubscription({ name: 'detect', topics: ['frame.ready'], leaseMs: LEASE_MS });
    await bus.publish({ id: event.eventId, topic: event.type, body: '{}' });
    const deliveries = bus.consume('detect', { signal: consuming.signal });
    const first = await deliveries[Symbol.asyncIterator]().next();
    const received = first.value as Delivery;
    let extended = 0;
    const delivery: Delivery = {
      ...received,
      extend: () => {
        extended += 1;
        return received.extend();
      },
    };
    const jobId = jobIdFor('detect', event.eventId);
    const begin = (workerId: string, startedAt: string) =>
      store.beginAttempt({
        jobId,
        module: 'detect',
        moduleVersion: 1,
        event,
        workerId,
        startedAt,
        leaseUntil,
      });
    expect((await begin('w1', new Date(heldSince).toISOString())).status).toBe('started');

    const watching = watchAttempt({
      store,
      delivery,
      jobId,
      attempt: 1,
      leaseMs: LEASE_MS,
      heldSince,
      logFile: join(dir, 'no-log'),
      log: pino({ level: 'silent' }),
      stop: new AbortController(),
    });
    try {
      // Another worker's claim sees the attempt busy, with the lease pushed out from now.
      const busy = await waitFor(
        'the attempt lease pushed out',
        async () => {
          const other = await begin('w2', new Date().toISOString());
          if (other.status !== 'busy') throw new Error(`claim by w2 ${other.status}`);
          return Date.parse(other.leaseUntil) > Date.parse(leaseUntil) ? other : undefined;
        },
        10_000,
      );
      expect(Date.parse(busy.leaseUntil)).toBeGreaterThan(Date.now() + LEASE_MS / 2);
      await waitFor('the delivery extended', () => (extended > 0 ? true : undefined), 10_000);
    } finally {
      watching.end();
    }
  });
});
