import { randomUUID } from 'node:crypto';
import { expect, it } from 'vitest';
import { childEventId, jobIdFor, settledEventId } from '../../src/core/ids.js';
import { TRACE_SETTLED, settledEvent, type Settlement } from '../../src/core/trace-settled.js';
import type { IonEvent, JobStateCounts, ModuleSpec } from '../../src/core/types.js';
import type { DocumentStore, FailAttemptInput } from '../../src/store/document-store.js';
import { openSettlementOf } from '../support/settlements.js';

/**
 * Conformance cases for settlements (the `ion.trace.settled` fan-in), registered inside the
 * document-store suite so they run against every adapter. `store()` is the suite's fresh
 * store; `at()` its strictly increasing timestamps (in 2030, after any module's creation).
 */
export function settlementConformance(store: () => DocumentStore, at: () => string): void {
  async function module(overrides: Partial<ModuleSpec>): Promise<string> {
    const name = `mod-${randomUUID()}`;
    await store().upsertModule({
      name,
      subscribes: ['never.sent'],
      publishes: [],
      executor: 'local',
      run: { command: ['true'] },
      retries: 3,
      timeoutMs: 60_000,
      concurrency: 1,
      env: {},
      ...overrides,
    });
    return name;
  }

  async function root(type: string, createdAt = at()): Promise<IonEvent> {
    const eventId = randomUUID();
    const event: IonEvent = {
      eventId,
      type,
      correlationId: eventId,
      parentEventId: null,
      source: 'api',
      sourceJobId: null,
      data: [{ key: 'video', value: 'v1.mp4' }],
      files: [],
      createdAt,
    };
    await store().insertRootEvent(event);
    return event;
  }

  function child(parent: IonEvent, mod: string, file: string, type: string): IonEvent {
    return {
      eventId: childEventId(parent.eventId, mod, file),
      type,
      correlationId: parent.correlationId,
      parentEventId: parent.eventId,
      source: mod,
      sourceJobId: jobIdFor(mod, parent.eventId),
      data: [],
      files: [],
      createdAt: at(),
    };
  }

  /** Starts an attempt whose lease lapses at once; returns its number. */
  async function begin(event: IonEvent, mod: string): Promise<number> {
    const startedAt = at();
    const r = await store().beginAttempt({
      jobId: jobIdFor(mod, event.eventId),
      module: mod,
      moduleVersion: 1,
      event,
      workerId: 'w1',
      startedAt,
      leaseUntil: startedAt,
    });
    return r.status === 'started' ? r.attempt : -1;
  }

  function commit(event: IonEvent, mod: string, attempt: number, children: IonEvent[] = []) {
    return store().commitAttempt({
      jobId: jobIdFor(mod, event.eventId),
      attempt,
      finishedAt: at(),
      durationMs: 5,
      exitCode: 0,
      logTail: '',
      logBlob: null,
      insights: [{ key: 'seen', value: mod }],
      outputs: [],
      children,
    });
  }

  function fail(
    event: IonEvent,
    mod: string,
    attempt: number,
    nextState: FailAttemptInput['nextState'],
  ) {
    return store().failAttempt({
      jobId: jobIdFor(mod, event.eventId),
      attempt,
      finishedAt: at(),
      durationMs: 5,
      exitCode: 1,
      errorCode: 'module_failed',
      errorKind: 'module',
      error: 'exit code 1',
      logTail: '',
      logBlob: null,
      nextState,
      countsAsFailure: true,
    });
  }

  /** Runs one job on `event` to success in one attempt. */
  async function succeed(event: IonEvent, mod: string, children: IonEvent[] = []) {
    return commit(event, mod, await begin(event, mod), children);
  }

  function counts(over: Partial<JobStateCounts>): JobStateCounts {
    return {
      pending: 0,
      running: 0,
      succeeded: 0,
      failed: 0,
      dead_lettered: 0,
      cancelled: 0,
      ...over,
    };
  }

  const openFor = (correlationId: string) => openSettlementOf(store(), correlationId);

  it('settles a fan-out trace once, when its last job ends, with the root and counts', async () => {
    const type = `video-${randomUUID()}`;
    const splitter = await module({ subscribes: [type], publishes: ['frame.ready'] });
    const detect = await module({ subscribes: ['frame.ready'] });
    const r = await root(type);
    const frames = [1, 2].map((n) => child(r, splitter, `f${n}.json`, 'frame.ready'));

    await succeed(r, splitter, frames);
    expect(await store().getSettlement(r.correlationId)).toBeNull();
    await succeed(frames[0]!, detect);
    expect(await store().getSettlement(r.correlationId)).toBeNull();
    const last = await succeed(frames[1]!, detect);

    const settlement = await store().getSettlement(r.correlationId);
    expect(settlement).toEqual({
      correlationId: r.correlationId,
      rootEventId: r.eventId,
      settledAt: last.finishedAt,
      jobs: counts({ succeeded: 3 }),
      done: false,
      eventId: null,
    });
    expect(await openFor(r.correlationId)).toEqual([settlement]);
    // A repeated commit of the last job (a redelivery) changes nothing.
    await commit(frames[1]!, detect, 1);
    expect(await store().getSettlement(r.correlationId)).toEqual(settlement);
  });

  it('does not settle while a failed job waits for its retry', async () => {
    const type = `video-${randomUUID()}`;
    const flaky = await module({ subscribes: [type] });
    const steady = await module({ subscribes: [type] });
    const r = await root(type);

    await fail(r, flaky, await begin(r, flaky), 'failed');
    await succeed(r, steady);
    expect(await store().getSettlement(r.correlationId)).toBeNull();

    await commit(r, flaky, await begin(r, flaky));
    expect((await store().getSettlement(r.correlationId))?.jobs).toEqual(counts({ succeeded: 2 }));
  });

  it('does not settle while a child event has no job yet, and ignores deleted modules', async () => {
    const type = `video-${randomUUID()}`;
    const splitter = await module({ subscribes: [type], publishes: ['frame.ready'] });
    const detect = await module({ subscribes: ['frame.ready'] });
    const gone = await module({ subscribes: ['frame.ready'] });
    await store().deleteModule(gone);
    const r = await root(type);
    const frame = child(r, splitter, 'f1.json', 'frame.ready');

    await succeed(r, splitter, [frame]);
    expect(await store().getSettlement(r.correlationId)).toBeNull();
    await succeed(frame, detect);
    expect(await store().getSettlement(r.correlationId)).not.toBeNull();
  });

  it('does not settle while a subscribed module is paused, until it runs after the resume', async () => {
    const type = `video-${randomUUID()}`;
    const splitter = await module({ subscribes: [type], publishes: ['frame.ready'] });
    const detect = await module({ subscribes: ['frame.ready'] });
    await store().setModulePaused(detect, true);
    const r = await root(type);
    const frame = child(r, splitter, 'f1.json', 'frame.ready');

    await succeed(r, splitter, [frame]);
    expect(await store().getSettlement(r.correlationId)).toBeNull();
    await store().setModulePaused(detect, false);
    await succeed(frame, detect);
    expect(await store().getSettlement(r.correlationId)).not.toBeNull();
  });

  it('does not wait for a module applied after the event was stored (it never received it)', async () => {
    const type = `video-${randomUUID()}`;
    const r = await root(type, '2001-01-01T00:00:00.000Z');
    await module({ subscribes: [type] }); // created after the event: it never received it
    const ran = await module({ subscribes: ['other'] });
    await succeed(r, ran);
    expect((await store().getSettlement(r.correlationId))?.jobs).toEqual(counts({ succeeded: 1 }));
  });

  /** Applies a new version of `name` that subscribes to `subscribes` (the store's clock). */
  async function resubscribe(name: string, subscribes: string[]): Promise<void> {
    const { version, paused, createdAt, updatedAt, ...spec } = (await store().getModule(name))!;
    void [version, paused, createdAt, updatedAt];
    await store().upsertModule({ ...spec, subscribes });
  }

  /** The wall clock's time once it has moved past the last store write (ms resolution). */
  function clockAfterNow(): string {
    const start = Date.now();
    while (Date.now() <= start); // at most a millisecond: the store stamps versions with it
    const t = new Date().toISOString();
    while (Date.now() <= Date.parse(t));
    return t;
  }

  it('does not wait for a module whose version applied after the event added its type', async () => {
    const type = `video-${randomUUID()}`;
    const ran = await module({ subscribes: [type] });
    const added = await module({ subscribes: ['other'] });
    const r = await root(type, clockAfterNow());
    await resubscribe(added, ['other', type]); // the event was published before: never received
    await succeed(r, ran);
    expect((await store().getSettlement(r.correlationId))?.jobs).toEqual(counts({ succeeded: 1 }));
  });

  it('waits for a module whose version applied after the event dropped its type', async () => {
    const type = `video-${randomUUID()}`;
    const ran = await module({ subscribes: [type] });
    const dropped = await module({ subscribes: [type] });
    const r = await root(type, clockAfterNow());
    await resubscribe(dropped, ['other']); // it received the event before: its job will come
    await succeed(r, ran);
    expect(await store().getSettlement(r.correlationId)).toBeNull();
    await succeed(r, dropped);
    expect((await store().getSettlement(r.correlationId))?.jobs).toEqual(counts({ succeeded: 2 }));
  });

  it('does not count a replayed job as the event having its job', async () => {
    const type = `video-${randomUUID()}`;
    const a = await module({ subscribes: [type] });
    const b = await module({ subscribes: [type] });
    const r = await root(type);
    await store().addReplayJobs(
      {
        replayId: randomUUID(),
        module: b,
        moduleVersion: null,
        selector: { eventId: r.eventId },
        jobs: 0,
        createdAt: at(),
      },
      [{ eventId: r.eventId, correlationId: r.correlationId }],
    );
    const replayed = (await store().listJobs({ module: b }))[0]!;
    await store().requestCancel(replayed.jobId, at());
    await succeed(r, a);
    // b's ordinary job on the root event has not run: the trace stays open.
    expect(await store().getSettlement(r.correlationId)).toBeNull();
    await succeed(r, b);
    expect((await store().getSettlement(r.correlationId))?.jobs).toEqual(
      counts({ succeeded: 2, cancelled: 1 }),
    );
  });

  // Every transaction that can end a trace's last job records the settlement.
  const endings: [string, (r: IonEvent, mod: string) => Promise<unknown>][] = [
    ['a commit', (r, mod) => succeed(r, mod)],
    ['a dead letter', async (r, mod) => fail(r, mod, await begin(r, mod), 'dead_lettered')],
    [
      'a cancel of a job waiting for its retry',
      async (r, mod) => {
        await fail(r, mod, await begin(r, mod), 'failed');
        return store().requestCancel(jobIdFor(mod, r.eventId), at());
      },
    ],
    [
      'a running job stopped on request',
      async (r, mod) => {
        const attempt = await begin(r, mod);
        await store().requestCancel(jobIdFor(mod, r.eventId), at());
        return fail(r, mod, attempt, 'failed'); // the cancel wins over the retry
      },
    ],
    [
      'a cancel completed when its worker had died',
      async (r, mod) => {
        await begin(r, mod);
        await store().requestCancel(jobIdFor(mod, r.eventId), at());
        return begin(r, mod); // the lease lapsed: the next begin completes the cancel
      },
    ],
  ];
  for (const [how, end] of endings) {
    it(`settles when the last job ends by ${how}, counting it by state`, async () => {
      const type = `video-${randomUUID()}`;
      const first = await module({ subscribes: [type] });
      const last = await module({ subscribes: [type] });
      const r = await root(type);
      await succeed(r, first);
      expect(await store().getSettlement(r.correlationId)).toBeNull();
      await end(r, last);
      const state = (await store().getJob(jobIdFor(last, r.eventId)))!.state;
      expect(['dead_lettered', 'cancelled', 'succeeded']).toContain(state);
      expect((await store().getSettlement(r.correlationId))?.jobs).toEqual(
        counts({ succeeded: 1, [state]: (state === 'succeeded' ? 1 : 0) + 1 }),
      );
    });
  }

  it('settles exactly once when the last two jobs end at the same time', async () => {
    // PostgreSQL runs the two commits on two pooled connections at once; SQLite serialises
    // them on its write lock. Either way one of them must see the other's end.
    for (let round = 0; round < 8; round++) {
      const type = `video-${randomUUID()}`;
      const a = await module({ subscribes: [type] });
      const b = await module({ subscribes: [type] });
      const r = await root(type);
      const [attemptA, attemptB] = [await begin(r, a), await begin(r, b)];
      await Promise.all([
        commit(r, a, attemptA),
        round % 2 === 0 ? commit(r, b, attemptB) : fail(r, b, attemptB, 'dead_lettered'),
      ]);
      const open = await openFor(r.correlationId);
      expect(open).toHaveLength(1);
      expect(open[0]!.jobs).toEqual(
        round % 2 === 0 ? counts({ succeeded: 2 }) : counts({ succeeded: 1, dead_lettered: 1 }),
      );
    }
  });

  it('records the settled event once, and its own jobs, redrives and replays never settle again', async () => {
    const type = `video-${randomUUID()}`;
    const flaky = await module({ subscribes: [type] });
    const summary = await module({ subscribes: [TRACE_SETTLED] });
    const r = await root(type);
    await fail(r, flaky, await begin(r, flaky), 'dead_lettered');
    const settlement = (await store().getSettlement(r.correlationId))!;
    expect(settlement.jobs).toEqual(counts({ dead_lettered: 1 }));

    const event = settledEvent(settlement, r, { sha256: 'b'.repeat(64), size: 2 });
    expect(event.eventId).toBe(settledEventId(r.correlationId));
    expect(await store().recordSettledEvent(event)).toEqual({ created: true });
    expect(await store().recordSettledEvent(event)).toEqual({ created: false });
    const outbox = (await store().pendingOutbox(100_000)).filter(
      (o) => o.eventId === event.eventId,
    );
    expect(outbox).toHaveLength(1);
    expect(await openFor(r.correlationId)).toEqual([]);
    const raised = { ...settlement, done: true, eventId: event.eventId };
    expect(await store().getSettlement(r.correlationId)).toEqual(raised);
    expect(await store().getEvent(event.eventId)).toEqual(event);

    // The summary job on the settled event ends, the dead letter is redriven and succeeds:
    // the trace has settled already and stays as it was.
    await succeed(event, summary);
    expect(await store().redriveDeadLetter(jobIdFor(flaky, r.eventId))).not.toBeNull();
    await commit(r, flaky, await begin(r, flaky));
    expect(await store().getSettlement(r.correlationId)).toEqual(raised);
    expect(await openFor(r.correlationId)).toEqual([]);
  });

  it('closes a settlement without an event when asked to, once', async () => {
    const type = `video-${randomUUID()}`;
    const only = await module({ subscribes: [type] });
    const r = await root(type);
    await succeed(r, only);
    const settlement = (await store().getSettlement(r.correlationId))!;
    await store().closeSettlement(r.correlationId);
    await store().closeSettlement(r.correlationId);
    expect(await store().getSettlement(r.correlationId)).toEqual({ ...settlement, done: true });
    expect(await openFor(r.correlationId)).toEqual([]);
    expect(await store().getEvent(settledEventId(r.correlationId))).toBeNull();
  });

  it('gives each open settlement to one relay at a time, until its claim ends or it is raised', async () => {
    const type = `video-${randomUUID()}`;
    const only = await module({ subscribes: [type] });
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await root(type);
      await succeed(r, only);
      ids.push(r.correlationId);
    }
    // Other cases' settlements are open too: a claim may take them, the checks look at these.
    const mine = (claimed: Settlement[]) =>
      claimed.map((s) => s.correlationId).filter((id) => ids.includes(id));
    const claim = (owner: string, now: string, until: string) =>
      store().claimSettlements({ owner, limit: 100_000, now, until });
    const [now, until, after] = [at(), at(), at()];

    // Two relays at once (two pooled connections on PostgreSQL): each settlement to one.
    const [a, b] = await Promise.all([claim('relay-a', now, until), claim('relay-b', now, until)]);
    expect([...mine(a), ...mine(b)].sort()).toEqual([...ids].sort());
    expect(a.every((s) => !s.done)).toBe(true);
    // While the claims hold, a third relay gets none; an owner gets its own back (a retry).
    expect(mine(await claim('relay-c', now, until))).toEqual([]);
    expect(mine(await claim('relay-a', now, until)).sort()).toEqual(mine(a).sort());

    // Raised, a settlement is never claimed again; the others go to whoever claims once the
    // claims have ended.
    const raised = (await store().getSettlement(ids[0]!))!;
    const event = settledEvent(raised, null, { sha256: 'c'.repeat(64), size: 2 });
    await store().recordSettledEvent(event);
    expect(mine(await claim('relay-c', after, after)).sort()).toEqual(ids.slice(1).sort());
  });
}
