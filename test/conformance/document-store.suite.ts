import { createHash, randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { childEventId, jobIdFor } from '../../src/core/ids.js';
import type { IonEvent, KeyValue, ModuleSpec, Replay } from '../../src/core/types.js';
import type { TokenRecord } from '../../src/core/tokens.js';
import type { DocumentStore, FailAttemptInput } from '../../src/store/document-store.js';
import { settlementConformance } from './settlement.suite.js';

/** What an adapter's test file hands the suite: a started store and how to dispose of it. */
export type DocumentStoreFactory = () => Promise<{
  store: DocumentStore;
  cleanup(): Promise<void>;
}>;

/**
 * The document-store conformance suite, written once and run against every adapter. It only
 * speaks the port: every test uses fresh random names and ids, so adapters may share one
 * database between tests, and nothing here looks at SQL.
 */
export function documentStoreConformance(name: string, factory: DocumentStoreFactory): void {
  describe(`DocumentStore conformance: ${name}`, () => {
    let store: DocumentStore;
    let cleanup: () => Promise<void>;
    let tick = 0;
    /** Strictly increasing caller-supplied timestamps, so ordering assertions are exact. */
    const at = (): string => new Date(Date.UTC(2030, 0, 1) + ++tick * 1000).toISOString();

    beforeEach(async () => {
      const made = await factory();
      store = made.store;
      cleanup = () => made.cleanup();
    });
    afterEach(async () => {
      await store.close();
      await cleanup();
    });

    function spec(overrides: Partial<ModuleSpec> = {}): ModuleSpec {
      return {
        name: `mod-${randomUUID()}`,
        subscribes: ['file_downloaded'],
        publishes: ['file_transcoded'],
        executor: 'local',
        run: { command: ['python3', 'transcode.py'] },
        retries: 2,
        timeoutMs: 60_000,
        concurrency: 1,
        env: { A: '1', B: '2' },
        ...overrides,
      };
    }

    function rootEvent(data: KeyValue[] = [], correlationId = randomUUID()): IonEvent {
      return {
        eventId: randomUUID(),
        type: `type-${randomUUID()}`,
        correlationId,
        parentEventId: null,
        source: 'api',
        sourceJobId: null,
        data,
        files: [{ path: 'in.txt', sha256: 'a'.repeat(64), size: 3 }],
        createdAt: at(),
      };
    }

    function childOf(parent: IonEvent, module: string, file: string): IonEvent {
      return {
        eventId: childEventId(parent.eventId, module, file),
        type: 'file_transcoded',
        correlationId: parent.correlationId,
        parentEventId: parent.eventId,
        source: module,
        sourceJobId: jobIdFor(module, parent.eventId),
        data: [{ key: 'file', value: file }],
        files: [],
        createdAt: at(),
      };
    }

    /** Begins an attempt whose lease lapses at once, unless `leaseSeconds` is given. */
    async function begin(event: IonEvent, module: string, workerId = 'w1', leaseSeconds = 0) {
      const startedAt = at();
      return store.beginAttempt({
        jobId: jobIdFor(module, event.eventId),
        module,
        moduleVersion: 1,
        event,
        workerId,
        startedAt,
        leaseUntil: new Date(Date.parse(startedAt) + leaseSeconds * 1000).toISOString(),
      });
    }

    function failure(jobId: string, attempt: number, over: Partial<FailAttemptInput> = {}) {
      return {
        jobId,
        attempt,
        finishedAt: at(),
        durationMs: 12,
        exitCode: 3,
        errorCode: 'module_failed',
        errorKind: 'module' as const,
        error: `exit code 3 on attempt ${attempt}`,
        logTail: `log of attempt ${attempt}`,
        logBlob: null,
        nextState: 'failed' as const,
        countsAsFailure: true,
        ...over,
      };
    }

    async function pendingFor(eventIds: string[]) {
      const rows = await store.pendingOutbox(100_000);
      return rows.filter((r) => eventIds.includes(r.eventId));
    }

    it('versions modules: created, unchanged, updated, deleted and revived', async () => {
      const s = spec();
      const rev0 = await store.modulesRevision();

      const created = await store.upsertModule(s);
      expect(created.change).toBe('created');
      expect(created.module).toMatchObject({ ...s, version: 1, paused: false });
      const rev1 = await store.modulesRevision();
      expect(rev1).toBeGreaterThan(rev0);

      const same = await store.upsertModule({ ...s, env: { B: '2', A: '1' } });
      expect(same.change).toBe('unchanged');
      expect(same.module.version).toBe(1);
      expect(await store.modulesRevision()).toBe(rev1);

      const changed = await store.upsertModule({ ...s, retries: 5 });
      expect(changed.change).toBe('updated');
      expect(changed.module.version).toBe(2);
      expect((await store.getModule(s.name))?.retries).toBe(5);
      const rev2 = await store.modulesRevision();
      expect(rev2).toBeGreaterThan(rev1);
      expect((await store.listModules()).map((m) => m.name)).toContain(s.name);

      expect(await store.deleteModule(s.name)).toBe(true);
      expect(await store.getModule(s.name)).toBeNull();
      expect((await store.listModules()).map((m) => m.name)).not.toContain(s.name);
      const rev3 = await store.modulesRevision();
      expect(rev3).toBeGreaterThan(rev2);
      expect(await store.deleteModule(s.name)).toBe(false);
      expect(await store.deleteModule(`absent-${randomUUID()}`)).toBe(false);

      const revived = await store.upsertModule({ ...s, retries: 5 });
      expect(revived.module.version).toBe(3);
      expect((await store.getModule(s.name))?.version).toBe(3);
      expect(await store.modulesRevision()).toBeGreaterThan(rev3);
    });

    it('inserts a root event once, keeps its data order and writes exactly one outbox row', async () => {
      const data = [
        { key: 'z', value: '1' },
        { key: 'a', value: '2' },
        { key: 'z', value: '3' },
      ];
      const event = rootEvent(data);
      const first = await store.insertRootEvent(event);
      expect(first).toEqual({ event, created: true });

      const again = await store.insertRootEvent({ ...event, data: [{ key: 'other', value: 'x' }] });
      expect(again.created).toBe(false);
      expect(again.event.data).toEqual(data);
      expect(await store.getEvent(event.eventId)).toEqual(event);
      expect(await store.getEvent(randomUUID())).toBeNull();

      const rows = await pendingFor([event.eventId]);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({
        eventId: event.eventId,
        type: event.type,
        correlationId: event.correlationId,
        subscription: null,
      });
    });

    it('runs a job through fail, retry and an idempotent commit', async () => {
      const module = `mod-${randomUUID()}`;
      const root = rootEvent();
      await store.insertRootEvent(root);
      const jobId = jobIdFor(module, root.eventId);

      const b1 = await begin(root, module);
      expect(b1).toMatchObject({ status: 'started', attempt: 1, failures: 0 });
      expect(b1.job).toMatchObject({ jobId, state: 'running', attempts: 1, eventId: root.eventId });
      expect(b1.job.correlationId).toBe(root.correlationId);

      const failed = await store.failAttempt(failure(jobId, 1));
      expect(failed.state).toBe('failed');
      expect(failed.lastError).toBe('exit code 3 on attempt 1');
      expect(failed.finishedAt).not.toBeNull();

      const b2 = await begin(root, module, 'w2');
      expect(b2).toMatchObject({ status: 'started', attempt: 2, failures: 1 });

      const children = [childOf(root, module, 'a.json'), childOf(root, module, 'b.json')];
      const insights = [
        { key: 'lang', value: 'en' },
        { key: 'pages', value: '3' },
      ];
      const outputs = [
        { path: 'a/b.txt', sha256: 'a'.repeat(64), size: 3 },
        { path: 'c.bin', sha256: 'c'.repeat(64), size: 0 },
      ];
      const commit = {
        jobId,
        attempt: 2,
        finishedAt: at(),
        durationMs: 40,
        exitCode: 0,
        logTail: 'done',
        logBlob: 'log-blob',
        insights,
        outputs,
        children,
      };
      const done = await store.commitAttempt(commit);
      expect(done).toMatchObject({ state: 'succeeded', lastError: null, attempts: 2, outputs });
      expect((await store.getJob(jobId))?.outputs).toEqual(outputs);

      const attempts = await store.listAttempts(jobId);
      expect(attempts.map((a) => [a.attempt, a.outcome, a.workerId])).toEqual([
        [1, 'failed', 'w1'],
        [2, 'succeeded', 'w2'],
      ]);
      expect(attempts[0]).toMatchObject({
        errorCode: 'module_failed',
        errorKind: 'module',
        exitCode: 3,
      });
      expect(attempts[1]).toMatchObject({
        exitCode: 0,
        durationMs: 40,
        logTail: 'done',
        logBlob: 'log-blob',
      });

      const ids = children.map((c) => c.eventId);
      const outbox = await pendingFor(ids);
      expect(outbox.map((r) => r.eventId).sort()).toEqual([...ids].sort());
      expect(outbox.every((r) => r.subscription === null && r.type === 'file_transcoded')).toBe(
        true,
      );
      expect(await store.getEvent(children[0]!.eventId)).toEqual(children[0]);

      const again = await store.commitAttempt({ ...commit, insights: [{ key: 'x', value: 'y' }] });
      expect(again.state).toBe('succeeded');
      expect(await pendingFor(ids)).toHaveLength(2);
      const stored = await store.listInsights({ jobId });
      expect(stored.map((i) => [i.key, i.value])).toEqual([
        ['lang', 'en'],
        ['pages', '3'],
      ]);
      expect(stored[0]).toMatchObject({
        module,
        eventId: root.eventId,
        correlationId: root.correlationId,
      });
      expect((await store.trace(root.correlationId)).events).toHaveLength(3);

      const b3 = await begin(root, module, 'w3');
      expect(b3.status).toBe('succeeded');
      expect(await store.listAttempts(jobId)).toHaveLength(2);
    });

    it('never re-inserts or re-publishes a child event that already exists', async () => {
      const root = rootEvent();
      await store.insertRootEvent(root);
      const child = childOf(root, 'producer', 'out.json');
      for (const module of [`a-${randomUUID()}`, `b-${randomUUID()}`]) {
        const b = await begin(root, module);
        const data = [{ key: 'by', value: module }];
        await store.commitAttempt({
          jobId: b.job.jobId,
          attempt: 1,
          finishedAt: at(),
          durationMs: 1,
          exitCode: 0,
          logTail: '',
          logBlob: null,
          outputs: [],
          insights: [],
          children: [{ ...child, data }],
        });
      }
      expect(await pendingFor([child.eventId])).toHaveLength(1);
      expect((await store.getEvent(child.eventId))?.data[0]?.value).toMatch(/^a-/);
    });

    it('closes a stale running attempt as worker_lost and counts it as a failure', async () => {
      const module = `mod-${randomUUID()}`;
      const root = rootEvent();
      await store.insertRootEvent(root);
      await begin(root, module, 'dead-worker');

      const b2 = await begin(root, module, 'w2');
      expect(b2).toMatchObject({ status: 'started', attempt: 2, failures: 1 });
      const [first, second] = await store.listAttempts(b2.job.jobId);
      expect(first).toMatchObject({
        outcome: 'failed',
        errorCode: 'worker_lost',
        errorKind: 'platform',
        error: 'the worker running this attempt stopped before it finished',
      });
      expect(first?.finishedAt).not.toBeNull();
      expect(second).toMatchObject({ outcome: 'running', workerId: 'w2' });
    });

    it('answers busy while another attempt holds a live lease, and takes over once it lapses', async () => {
      const module = `mod-${randomUUID()}`;
      const root = rootEvent();
      await store.insertRootEvent(root);
      const first = await begin(root, module, 'w1', 5); // the fake clock ticks 1 s per call
      expect(first).toMatchObject({ status: 'started', attempt: 1 });

      const duplicate = await begin(root, module, 'w2');
      expect(duplicate).toMatchObject({ status: 'busy', attempt: 1 });
      expect((await store.listAttempts(first.job.jobId)).map((a) => a.outcome)).toEqual([
        'running',
      ]);

      // Renewing pushes the lease past the next few ticks; a closed attempt cannot be renewed.
      const renewed = new Date(Date.UTC(2030, 0, 1) + (tick + 10) * 1000).toISOString();
      expect(await store.renewAttempt(first.job.jobId, 1, renewed)).toBe('held');
      for (let i = 0; i < 5; i += 1) expect((await begin(root, module, 'w2')).status).toBe('busy');
      expect(await store.renewAttempt(first.job.jobId, 2, renewed)).toBe('closed');

      tick += 10; // the lease lapses: the next delivery closes the attempt as lost
      const takeover = await begin(root, module, 'w2');
      expect(takeover).toMatchObject({ status: 'started', attempt: 2, failures: 1 });
      expect(await store.renewAttempt(first.job.jobId, 1, renewed)).toBe('closed');
    });

    it('closes a second attempt that commits after another attempt of its job succeeded', async () => {
      // Attempt 1's lease lapses while it still runs; attempt 2 takes over; both finish.
      const module = `mod-${randomUUID()}`;
      const root = rootEvent();
      await store.insertRootEvent(root);
      const first = await begin(root, module, 'w1');
      const jobId = first.job.jobId;
      expect(await begin(root, module, 'w2')).toMatchObject({ status: 'started', attempt: 2 });
      const outputs = [{ path: 'one.txt', sha256: '1'.repeat(64), size: 1 }];
      const commit = {
        jobId,
        finishedAt: at(),
        durationMs: 5,
        exitCode: 0,
        logTail: 'tail',
        logBlob: null,
        insights: [{ key: 'by', value: 'one' }],
        children: [],
      };
      expect(await store.commitAttempt({ ...commit, attempt: 1, outputs })).toMatchObject({
        state: 'succeeded',
        outputs,
      });
      const late = await store.commitAttempt({
        ...commit,
        attempt: 2,
        outputs: [{ path: 'two.txt', sha256: '2'.repeat(64), size: 2 }],
        insights: [{ key: 'by', value: 'two' }],
      });
      expect(late).toMatchObject({ state: 'succeeded', outputs });
      const attempts = await store.listAttempts(jobId);
      expect(attempts.map((a) => [a.attempt, a.outcome])).toEqual([
        [1, 'succeeded'],
        [2, 'failed'],
      ]);
      expect(attempts[1]).toMatchObject({
        errorCode: 'conflict',
        errorKind: 'platform',
        logTail: 'tail',
      });
      expect(attempts[1]!.error).toMatch(/another attempt of this job succeeded first/);
      expect((await store.listInsights({ jobId })).map((i) => i.value)).toEqual(['one']);
    });

    it("records a running attempt's log progress with each renewal", async () => {
      const module = `mod-${randomUUID()}`;
      const root = rootEvent();
      await store.insertRootEvent(root);
      const b = await begin(root, module, 'w1', 60);
      const lease = new Date(Date.UTC(2030, 0, 1) + (tick + 60) * 1000).toISOString();
      expect(
        await store.renewAttempt(b.job.jobId, 1, lease, { logTail: 'line 1\n', logSize: 7 }),
      ).toBe('held');
      expect((await store.listAttempts(b.job.jobId))[0]).toMatchObject({
        logTail: 'line 1\n',
        logSize: 7,
      });
      // A renewal without progress keeps what was recorded.
      expect(await store.renewAttempt(b.job.jobId, 1, lease)).toBe('held');
      expect((await store.listAttempts(b.job.jobId))[0]).toMatchObject({ logSize: 7 });
    });

    describe('cancel', () => {
      it('cancels a waiting job at once; a later delivery of it is acked, not run', async () => {
        const module = `mod-${randomUUID()}`;
        const root = rootEvent();
        await store.insertRootEvent(root);
        const b1 = await begin(root, module);
        await store.failAttempt(failure(b1.job.jobId, 1)); // failed, a retry is due
        const cancelled = await store.requestCancel(b1.job.jobId, at());
        expect(cancelled).toMatchObject({ status: 'cancelled', job: { state: 'cancelled' } });
        expect(cancelled?.job.finishedAt).not.toBeNull();
        expect(await begin(root, module)).toMatchObject({ status: 'cancelled' });
        expect(await store.listAttempts(b1.job.jobId)).toHaveLength(1);
        expect(await store.requestCancel(b1.job.jobId, at())).toMatchObject({ status: 'settled' });
      });

      it('flags a running job; its renewal says so, and its failure ends it cancelled', async () => {
        const module = `mod-${randomUUID()}`;
        const root = rootEvent();
        await store.insertRootEvent(root);
        const b = await begin(root, module, 'w1', 60);
        const lease = new Date(Date.UTC(2030, 0, 1) + (tick + 60) * 1000).toISOString();
        const asked = await store.requestCancel(b.job.jobId, at());
        expect(asked).toMatchObject({ status: 'cancelling', job: { state: 'running' } });
        expect(asked?.job.cancelRequestedAt).not.toBeNull();
        expect(await store.renewAttempt(b.job.jobId, 1, lease)).toBe('cancel_requested');
        // Even a worker that reports an ordinary failure cannot schedule a retry any more.
        const job = await store.failAttempt(failure(b.job.jobId, 1, { nextState: 'failed' }));
        expect(job.state).toBe('cancelled');
        expect(await store.listDeadLetters({ module })).toEqual([]);
      });

      it('lets a success that wins the race stand', async () => {
        const module = `mod-${randomUUID()}`;
        const root = rootEvent();
        await store.insertRootEvent(root);
        const b = await begin(root, module, 'w1', 60);
        await store.requestCancel(b.job.jobId, at());
        const job = await store.commitAttempt({
          jobId: b.job.jobId,
          attempt: 1,
          finishedAt: at(),
          durationMs: 5,
          exitCode: 0,
          logTail: '',
          logBlob: null,
          insights: [],
          outputs: [],
          children: [],
        });
        expect(job.state).toBe('succeeded');
        expect(await store.requestCancel(b.job.jobId, at())).toMatchObject({ status: 'settled' });
      });

      it('completes the cancel of a job whose worker died', async () => {
        const module = `mod-${randomUUID()}`;
        const root = rootEvent();
        await store.insertRootEvent(root);
        const b = await begin(root, module, 'w1', 1);
        await store.requestCancel(b.job.jobId, at());
        tick += 5; // the lease lapses
        expect(await begin(root, module, 'w2')).toMatchObject({
          status: 'cancelled',
          job: { state: 'cancelled' },
        });
      });

      it('answers null for an unknown job', async () => {
        expect(await store.requestCancel(randomUUID(), at())).toBeNull();
      });
    });

    describe('replays', () => {
      function replayOf(
        module: string,
        selector: Replay['selector'],
        version: number | null = null,
      ): Replay {
        return {
          replayId: randomUUID(),
          module,
          moduleVersion: version,
          selector,
          jobs: 0,
          createdAt: at(),
        };
      }

      it('creates one pending job per event, linked to the ordinary job, with an outbox entry for it', async () => {
        const s = spec();
        await store.upsertModule(s);
        const ran = rootEvent();
        const never = rootEvent();
        await store.insertRootEvent(ran);
        await store.insertRootEvent(never);
        const ordinary = await begin(ran, s.name);
        const replay = replayOf(s.name, { type: ran.type });
        expect(await store.addReplayJobs(replay, [ran, never])).toBe(2);

        const jobs = await store.listJobs({ replayId: replay.replayId });
        expect(jobs).toHaveLength(2);
        const onRan = jobs.find((j) => j.eventId === ran.eventId)!;
        expect(onRan).toMatchObject({
          jobId: jobIdFor(s.name, ran.eventId, replay.replayId),
          state: 'pending',
          attempts: 0,
          replayId: replay.replayId,
          replayOf: ordinary.job.jobId,
          pinnedVersion: null,
          moduleVersion: 1,
        });
        expect(jobs.find((j) => j.eventId === never.eventId)?.replayOf).toBeNull();

        const outbox = (await store.pendingOutbox(100_000)).filter(
          (o) => o.jobId !== null && jobs.some((j) => j.jobId === o.jobId),
        );
        expect(outbox).toHaveLength(2);
        expect(outbox.every((o) => o.subscription === s.name)).toBe(true);

        // The replayed job runs through the ordinary lifecycle under its own id.
        const startedAt = at();
        const begun = await store.beginAttempt({
          jobId: onRan.jobId,
          module: s.name,
          moduleVersion: 1,
          event: ran,
          workerId: 'w1',
          startedAt,
          leaseUntil: startedAt,
        });
        expect(begun).toMatchObject({ status: 'started', attempt: 1, failures: 0 });
        expect((await store.getJob(ordinary.job.jobId))?.attempts).toBe(1);
      });

      it('adds nothing twice when the same targets are added again, and counts jobs by state', async () => {
        const s = spec();
        await store.upsertModule(s);
        const events = [rootEvent(), rootEvent(), rootEvent()];
        for (const e of events) await store.insertRootEvent(e);
        const replay = replayOf(s.name, { eventId: events[0]!.eventId }, 1);
        expect(await store.addReplayJobs(replay, events.slice(0, 2))).toBe(2);
        expect(await store.addReplayJobs(replay, events)).toBe(1);
        const status = await store.getReplay(replay.replayId);
        expect(status).toMatchObject({
          replayId: replay.replayId,
          module: s.name,
          moduleVersion: 1,
          selector: { eventId: events[0]!.eventId },
          jobs: 3,
        });
        expect(status?.states).toMatchObject({ pending: 3, running: 0, succeeded: 0 });
        expect((await store.listJobs({ replayId: replay.replayId }))[0]?.pinnedVersion).toBe(1);
      });

      it('lists replays newest first, by module, and answers null for an unknown one', async () => {
        const a = spec();
        const b = spec();
        await store.upsertModule(a);
        await store.upsertModule(b);
        const first = replayOf(a.name, { type: 't' });
        const second = replayOf(b.name, { type: 't', since: at() });
        const third = replayOf(a.name, { type: 't' });
        for (const r of [first, second, third]) await store.addReplayJobs(r, []);
        const mine = (await store.listReplays()).filter((r) =>
          [first, second, third].some((x) => x.replayId === r.replayId),
        );
        expect(mine.map((r) => r.replayId)).toEqual([
          third.replayId,
          second.replayId,
          first.replayId,
        ]);
        expect((await store.listReplays({ module: a.name })).map((r) => r.replayId)).toEqual([
          third.replayId,
          first.replayId,
        ]);
        expect(await store.getReplay(randomUUID())).toBeNull();
      });

      it('redrives a dead-lettered replayed job to its own job again', async () => {
        const s = spec();
        await store.upsertModule(s);
        const e = rootEvent();
        await store.insertRootEvent(e);
        const replay = replayOf(s.name, { eventId: e.eventId });
        await store.addReplayJobs(replay, [e]);
        const jobId = jobIdFor(s.name, e.eventId, replay.replayId);
        const startedAt = at();
        await store.beginAttempt({
          jobId,
          module: s.name,
          moduleVersion: 1,
          event: e,
          workerId: 'w1',
          startedAt,
          leaseUntil: startedAt,
        });
        await store.failAttempt(
          failure(jobId, 1, { nextState: 'dead_lettered', deadLetterReason: 'boom' }),
        );
        const before = new Set((await store.pendingOutbox(100_000)).map((o) => o.id));
        await store.redriveDeadLetter(jobId);
        const fresh = (await store.pendingOutbox(100_000)).filter((o) => !before.has(o.id));
        expect(fresh).toEqual([
          expect.objectContaining({ eventId: e.eventId, subscription: s.name, jobId }),
        ]);
      });
    });

    it('does not count an attempt released without blame against the budget', async () => {
      const module = `mod-${randomUUID()}`;
      const root = rootEvent();
      await store.insertRootEvent(root);
      const b1 = await begin(root, module);
      const released = await store.failAttempt(
        failure(b1.job.jobId, 1, { nextState: 'pending', countsAsFailure: false }),
      );
      expect(released.state).toBe('pending');
      expect(await begin(root, module)).toMatchObject({ attempt: 2, failures: 0 });
    });

    it('dead-letters a job, redrives it with a fresh budget, and discards dead letters', async () => {
      const module = `mod-${randomUUID()}`;
      const root = rootEvent();
      await store.insertRootEvent(root);
      const jobId = jobIdFor(module, root.eventId);
      await begin(root, module);
      await store.failAttempt(failure(jobId, 1));
      await begin(root, module);
      const dead = await store.failAttempt(
        failure(jobId, 2, { nextState: 'dead_lettered', deadLetterReason: 'out of retries' }),
      );
      expect(dead.state).toBe('dead_lettered');

      const dl = await store.getDeadLetter(jobId);
      expect(dl).toMatchObject({
        id: jobId,
        jobId,
        module,
        eventId: root.eventId,
        reason: 'out of retries',
        attempts: 2,
        logTail: 'log of attempt 2',
      });
      expect((await store.listDeadLetters({ module })).map((d) => d.id)).toEqual([jobId]);
      expect((await begin(root, module)).status).toBe('dead_lettered');
      expect(await store.listAttempts(jobId)).toHaveLength(2);

      const before = (await pendingFor([root.eventId])).length;
      const redriven = await store.redriveDeadLetter(jobId);
      expect(redriven).toMatchObject({ jobId, state: 'pending', attempts: 2 });
      expect(await store.getDeadLetter(jobId)).toBeNull();
      const outbox = await pendingFor([root.eventId]);
      expect(outbox).toHaveLength(before + 1);
      expect(outbox.at(-1)).toMatchObject({ eventId: root.eventId, subscription: module });
      expect(await begin(root, module)).toMatchObject({
        status: 'started',
        attempt: 3,
        failures: 0,
      });
      expect(await store.redriveDeadLetter(jobId)).toBeNull();

      const malformed = {
        id: randomUUID(),
        jobId: '',
        module,
        eventId: null,
        reason: 'message is not JSON',
        attempts: 0,
        logTail: '',
        createdAt: at(),
      };
      await store.addDeadLetter(malformed);
      expect(await store.getDeadLetter(malformed.id)).toEqual(malformed);
      expect(await store.redriveDeadLetter(malformed.id)).toBeNull();
      expect(await store.getDeadLetter(malformed.id)).toBeNull();

      const other = { ...malformed, id: randomUUID(), createdAt: at() };
      const newest = { ...malformed, id: randomUUID(), createdAt: at() };
      await store.addDeadLetter(other);
      await store.addDeadLetter(newest);
      expect((await store.listDeadLetters({ module })).map((d) => d.id)).toEqual([
        newest.id,
        other.id,
      ]);
      expect(await store.listDeadLetters({ module, limit: 1 })).toHaveLength(1);
      expect(await store.discardDeadLetter(other.id)).toBe(true);
      expect(await store.discardDeadLetter(other.id)).toBe(false);
      expect((await store.listDeadLetters({ module })).map((d) => d.id)).toEqual([newest.id]);
    });

    it('finds insights by key and value', async () => {
      const module = `mod-${randomUUID()}`;
      const tag = randomUUID();
      for (const lang of ['en', 'fr', 'en']) {
        const root = rootEvent();
        await store.insertRootEvent(root);
        const b = await begin(root, module);
        await store.commitAttempt({
          jobId: b.job.jobId,
          attempt: 1,
          finishedAt: at(),
          durationMs: 1,
          exitCode: 0,
          logTail: '',
          logBlob: null,
          outputs: [],
          insights: [
            { key: `lang-${tag}`, value: lang },
            { key: 'size', value: '1' },
          ],
          children: [],
        });
      }
      const en = await store.listInsights({ key: `lang-${tag}`, value: 'en' });
      expect(en).toHaveLength(2);
      expect(en.every((i) => i.value === 'en' && i.module === module)).toBe(true);
      expect(await store.listInsights({ key: `lang-${tag}` })).toHaveLength(3);
      expect(await store.listInsights({ module })).toHaveLength(6);
      expect(await store.listInsights({ module, key: 'size', limit: 2 })).toHaveLength(2);
    });

    it('traces one correlation id only, in creation order', async () => {
      const module = `mod-${randomUUID()}`;
      const root = rootEvent();
      const stranger = rootEvent();
      await store.insertRootEvent(root);
      await store.insertRootEvent(stranger);
      const child = childOf(root, module, 'out.json');
      for (const ev of [root, stranger]) {
        const b = await begin(ev, module);
        await store.commitAttempt({
          jobId: b.job.jobId,
          attempt: 1,
          finishedAt: at(),
          durationMs: 1,
          exitCode: 0,
          logTail: '',
          logBlob: null,
          outputs: [],
          insights: [{ key: 'who', value: ev.eventId }],
          children: ev === root ? [child] : [],
        });
      }
      const t = await store.trace(root.correlationId);
      expect(t.correlationId).toBe(root.correlationId);
      expect(t.events.map((e) => e.eventId)).toEqual([root.eventId, child.eventId]);
      expect(t.jobs.map((j) => j.jobId)).toEqual([jobIdFor(module, root.eventId)]);
      expect(t.insights.map((i) => i.value)).toEqual([root.eventId]);
      expect(await store.trace(randomUUID())).toMatchObject({ events: [], jobs: [], insights: [] });
    });

    it('filters jobs by when they last changed: since inclusive, until exclusive', async () => {
      const module = `mod-${randomUUID()}`;
      const jobs = [];
      for (let i = 0; i < 3; i += 1) {
        const root = rootEvent();
        await store.insertRootEvent(root);
        jobs.push((await begin(root, module)).job); // updatedAt = the fake clock, one tick apart
      }
      const [a, b, c] = jobs.map((j) => j.updatedAt) as [string, string, string];
      const ids = async (since?: string, until?: string) =>
        (
          await store.listJobs({
            module,
            ...(since === undefined ? {} : { since }),
            ...(until === undefined ? {} : { until }),
          })
        ).map((j) => j.updatedAt);
      expect(await ids(b)).toEqual([c, b]);
      expect(await ids(undefined, b)).toEqual([a]);
      expect(await ids(a, c)).toEqual([b, a]);
      expect(await ids(c, c)).toEqual([]);
    });

    it('filters jobs and lists the most recently updated first', async () => {
      const module = `mod-${randomUUID()}`;
      const a = rootEvent();
      const b = rootEvent();
      await store.insertRootEvent(a);
      await store.insertRootEvent(b);
      const ja = await begin(a, module);
      const jb = await begin(b, module);
      await store.failAttempt(failure(ja.job.jobId, 1));

      expect((await store.listJobs({ module })).map((j) => j.jobId)).toEqual([
        ja.job.jobId,
        jb.job.jobId,
      ]);
      expect((await store.listJobs({ module, state: 'running' })).map((j) => j.jobId)).toEqual([
        jb.job.jobId,
      ]);
      expect(await store.listJobs({ correlationId: a.correlationId })).toHaveLength(1);
      expect((await store.listJobs({ eventId: b.eventId }))[0]?.jobId).toBe(jb.job.jobId);
      expect(await store.listJobs({ module, limit: 1 })).toHaveLength(1);
      expect(await store.getJob(ja.job.jobId)).toMatchObject({ state: 'failed', module });
      expect(await store.getJob(randomUUID())).toBeNull();
    });

    it('stops returning outbox rows once they are marked published', async () => {
      const a = rootEvent();
      const b = rootEvent();
      await store.insertRootEvent(a);
      await store.insertRootEvent(b);
      const rows = await pendingFor([a.eventId, b.eventId]);
      expect(rows.map((r) => r.eventId)).toEqual([a.eventId, b.eventId]);
      const ids = rows.map((r) => r.id);
      expect(new Set(ids).size).toBe(2);

      await store.markPublished([ids[0]!]);
      expect((await pendingFor([a.eventId, b.eventId])).map((r) => r.eventId)).toEqual([b.eventId]);
      await store.markPublished(ids);
      expect(await pendingFor([a.eventId, b.eventId])).toEqual([]);
      await store.markPublished([]);
    });

    // -- API tokens ------------------------------------------------------------------------

    function tokenRecord(overrides: Partial<TokenRecord> = {}): TokenRecord {
      return {
        id: randomUUID(),
        name: `token-${randomUUID()}`,
        scopes: ['publish', 'read'],
        hash: createHash('sha256').update(randomUUID()).digest('hex'),
        createdAt: at(),
        lastUsedAt: null,
        revokedAt: null,
        ...overrides,
      };
    }

    it('stores a token and finds it again by its hash only', async () => {
      const record = tokenRecord();
      await store.createToken(record);
      expect(await store.findTokenByHash(record.hash)).toEqual(record);
      expect(
        await store.findTokenByHash(createHash('sha256').update('x').digest('hex')),
      ).toBeNull();
      const listed = (await store.listTokens()).find((t) => t.id === record.id);
      expect(listed).toEqual(record);
    });

    it('refuses a second token with the same id or the same hash', async () => {
      const record = tokenRecord();
      await store.createToken(record);
      await expect(store.createToken(tokenRecord({ id: record.id }))).rejects.toMatchObject({
        code: 'conflict',
      });
      await expect(store.createToken(tokenRecord({ hash: record.hash }))).rejects.toMatchObject({
        code: 'conflict',
      });
    });

    it('lists tokens oldest first, revoked ones included', async () => {
      const a = tokenRecord({ scopes: ['admin'] });
      const b = tokenRecord({ scopes: ['read'] });
      await store.createToken(a);
      await store.createToken(b);
      const revokedAt = at();
      await store.revokeToken(a.id, revokedAt);
      const ids = (await store.listTokens()).map((t) => t.id);
      expect(ids.filter((id) => id === a.id || id === b.id)).toEqual([a.id, b.id]);
      const listed = (await store.listTokens()).find((t) => t.id === a.id);
      expect(listed).toMatchObject({ scopes: ['admin'], revokedAt });
    });

    it('revokes a token once: a second revocation keeps the first time', async () => {
      const record = tokenRecord();
      await store.createToken(record);
      const first = at();
      expect(await store.revokeToken(record.id, first)).toEqual({ ...record, revokedAt: first });
      expect(await store.revokeToken(record.id, at())).toMatchObject({ revokedAt: first });
      expect(await store.findTokenByHash(record.hash)).toMatchObject({ revokedAt: first });
      expect(await store.revokeToken(randomUUID(), at())).toBeNull();
    });

    it('records when a token was last used', async () => {
      const record = tokenRecord();
      await store.createToken(record);
      const used = at();
      await store.touchToken(record.id, used);
      expect(await store.findTokenByHash(record.hash)).toEqual({ ...record, lastUsedAt: used });
      await store.touchToken(randomUUID(), at());
    });

    // -- module admin --
    describe('settlements (ion.trace.settled)', () => {
      settlementConformance(() => store, at);
    });

    describe('module admin', () => {
      it('pauses and resumes a live module, bumping the revision each time', async () => {
        const s = spec();
        await store.upsertModule(s);
        const before = await store.modulesRevision();
        const paused = await store.setModulePaused(s.name, true);
        expect(paused).toMatchObject({ name: s.name, version: 1, paused: true });
        expect(await store.getModule(s.name)).toMatchObject({ paused: true });
        expect(await store.modulesRevision()).toBeGreaterThan(before);
        const mid = await store.modulesRevision();
        expect(await store.setModulePaused(s.name, false)).toMatchObject({ paused: false });
        expect((await store.listModules()).find((m) => m.name === s.name)?.paused).toBe(false);
        expect(await store.modulesRevision()).toBeGreaterThan(mid);
      });

      it('keeps a module paused across a new version', async () => {
        const s = spec();
        await store.upsertModule(s);
        await store.setModulePaused(s.name, true);
        const { module } = await store.upsertModule({ ...s, retries: 5 });
        expect(module).toMatchObject({ version: 2, paused: true });
      });

      it('answers null when pausing an unknown or deleted module', async () => {
        expect(await store.setModulePaused(`mod-${randomUUID()}`, true)).toBeNull();
        const s = spec();
        await store.upsertModule(s);
        await store.deleteModule(s.name);
        const before = await store.modulesRevision();
        expect(await store.setModulePaused(s.name, true)).toBeNull();
        expect(await store.modulesRevision()).toBe(before);
      });

      it('lists every version oldest first, and keeps them after a delete', async () => {
        const s = spec();
        await store.upsertModule(s);
        await store.upsertModule(s); // unchanged: no new version
        await store.upsertModule({ ...s, retries: 7, run: { command: ['x'], cwd: '/srv' } });
        const versions = await store.listModuleVersions(s.name);
        expect(versions.map((v) => v.version)).toEqual([1, 2]);
        expect(versions[0]!.spec).toEqual(s);
        expect(versions[1]!.spec).toEqual({
          ...s,
          retries: 7,
          run: { command: ['x'], cwd: '/srv' },
        });
        expect(typeof versions[0]!.createdAt).toBe('string');
        await store.deleteModule(s.name);
        expect((await store.listModuleVersions(s.name)).map((v) => v.version)).toEqual([1, 2]);
        expect(await store.listModuleVersions(`mod-${randomUUID()}`)).toEqual([]);
      });
    });

    // -- event queries (listEvents) --
    describe('event queries', () => {
      it('lists events newest first in cursor pages, without duplicates or gaps', async () => {
        const type = `type-${randomUUID()}`;
        const same = at();
        const events: IonEvent[] = [];
        for (let i = 0; i < 7; i++) {
          // Three share one timestamp, so the event id must break ties.
          const e = { ...rootEvent(), type, ...(i >= 2 && i < 5 ? { createdAt: same } : {}) };
          if (i >= 5) e.createdAt = at();
          await store.insertRootEvent(e);
          events.push(e);
        }
        const expected = [...events]
          .sort((a, b) =>
            a.createdAt === b.createdAt
              ? a.eventId < b.eventId
                ? 1
                : -1
              : a.createdAt < b.createdAt
                ? 1
                : -1,
          )
          .map((e) => e.eventId);
        const seen: string[] = [];
        let cursor: string | undefined;
        let pages = 0;
        for (;;) {
          const page = await store.listEvents({
            type,
            limit: 3,
            ...(cursor === undefined ? {} : { cursor }),
          });
          pages++;
          seen.push(...page.events.map((e) => e.eventId));
          if (page.nextCursor === null) break;
          cursor = page.nextCursor;
        }
        expect(pages).toBe(3);
        expect(seen).toEqual(expected);
        expect((await store.listEvents({ type, limit: 7 })).nextCursor).toBeNull();
        const first = (await store.listEvents({ type, limit: 1 })).events[0];
        expect(first).toEqual(events.find((e) => e.eventId === expected[0]));
      });

      it('filters events by type, source, correlation id and time range', async () => {
        const root = rootEvent();
        await store.insertRootEvent(root);
        const module = `m-${randomUUID()}`;
        const b = await begin(root, module);
        if (b.status !== 'started') throw new Error(b.status);
        const child = childOf(root, module, 'a.txt');
        await store.commitAttempt({
          jobId: b.job.jobId,
          attempt: b.attempt,
          finishedAt: at(),
          durationMs: 1,
          exitCode: 0,
          logTail: '',
          logBlob: null,
          insights: [],
          outputs: [],
          children: [child],
        });
        const ids = async (f: Parameters<DocumentStore['listEvents']>[0]) =>
          (await store.listEvents(f)).events.map((e) => e.eventId);
        const correlationId = root.correlationId;
        expect(await ids({ correlationId })).toEqual([child.eventId, root.eventId]);
        expect(await ids({ correlationId, source: module })).toEqual([child.eventId]);
        expect(await ids({ correlationId, type: root.type })).toEqual([root.eventId]);
        expect(await ids({ correlationId, since: child.createdAt })).toEqual([child.eventId]);
        expect(await ids({ correlationId, until: child.createdAt })).toEqual([root.eventId]);
        expect(await ids({ correlationId, type: `type-${randomUUID()}` })).toEqual([]);
      });

      it('refuses a malformed cursor with a validation error', async () => {
        for (const cursor of ['not a cursor', 'e30', Buffer.from('[1,2]').toString('base64url')])
          await expect(store.listEvents({ cursor })).rejects.toMatchObject({
            code: 'validation_failed',
          });
      });

      it('finds insights by value prefix (literal % and _) and time range', async () => {
        const root = rootEvent();
        await store.insertRootEvent(root);
        const module = `m-${randomUUID()}`;
        const b = await begin(root, module);
        if (b.status !== 'started') throw new Error(b.status);
        const key = `k-${randomUUID()}`;
        const finishedAt = at();
        await store.commitAttempt({
          jobId: b.job.jobId,
          attempt: b.attempt,
          finishedAt,
          durationMs: 1,
          exitCode: 0,
          logTail: '',
          logBlob: null,
          insights: [
            { key, value: 'en-GB' },
            { key, value: 'en_US' },
            { key, value: 'EN-x' },
            { key, value: '50%off' },
            { key, value: 'fr' },
          ],
          outputs: [],
          children: [],
        });
        const values = async (f: Parameters<DocumentStore['listInsights']>[0]) =>
          (await store.listInsights({ key, ...f })).map((i) => i.value);
        expect(await values({ valuePrefix: 'en' })).toEqual(['en-GB', 'en_US']);
        expect(await values({ valuePrefix: 'en_' })).toEqual(['en_US']);
        expect(await values({ valuePrefix: '50%' })).toEqual(['50%off']);
        expect(await values({ valuePrefix: '5%' })).toEqual([]);
        expect(await values({ value: 'fr' })).toEqual(['fr']);
        const all = await store.listInsights({ key });
        const createdAt = all[0]!.createdAt;
        expect(await values({ since: createdAt, valuePrefix: 'fr' })).toEqual(['fr']);
        expect(await values({ until: createdAt })).toEqual([]);
        expect(
          await values({ until: new Date(Date.parse(createdAt) + 1).toISOString() }),
        ).toHaveLength(5);
      });
    });
  });
}
