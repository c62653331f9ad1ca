import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  decodeLiveCursor,
  encodeLiveCursor,
  isAfter,
  type LiveCursor,
} from '../../src/api/routes/live.js';
import { expectError, runChild, startApiApp, type ApiApp } from '../support/api-app.js';
import { waitFor } from '../support/wait.js';

/** One parsed Server-Sent Events message. */
interface SseMessage {
  event: string;
  id: string;
  data: Record<string, unknown>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Waits until the live stream has polled the store twice more from now: the second poll
 * starts after the first ended, so everything stored before this call has been seen.
 */
async function polledAgain(): Promise<void> {
  const polls = vi.spyOn(api.app.control, 'listEvents');
  try {
    await waitFor('two more polls of the live stream', () =>
      polls.mock.calls.length >= 2 ? true : undefined,
    );
  } finally {
    polls.mockRestore();
  }
}

let api: ApiApp;
let base: string;

beforeEach(async () => {
  api = await startApiApp('ion-live-', 1024 * 1024);
  const { port } = api.app.server!.server.address() as AddressInfo;
  base = `http://127.0.0.1:${port}`;
});

afterEach(async () => {
  await api.stop();
});

/**
 * Opens the stream and reads its messages (comments skipped) as they arrive. Like a browser,
 * it remembers the last `id` seen, also from a block without data.
 */
async function openStream(query: string, headers: Record<string, string> = {}) {
  const controller = new AbortController();
  const res = await fetch(`${base}/v1/stream${query}`, { signal: controller.signal, headers });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/event-stream');
  expect(res.headers.get('cache-control')).toBe('no-cache');
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let lastId = '';
  const queued: SseMessage[] = [];

  async function next(deadlineMs: number): Promise<SseMessage> {
    const deadline = Date.now() + deadlineMs;
    for (;;) {
      if (queued.length > 0) return queued.shift()!;
      const blocks = buffer.split('\n\n');
      buffer = blocks.pop()!;
      for (const block of blocks) {
        const fields: Record<string, string> = {};
        for (const line of block.split('\n')) {
          if (line.startsWith(':') || line === '') continue;
          const colon = line.indexOf(':');
          fields[line.slice(0, colon)] = line.slice(colon + 1).trimStart();
        }
        if (fields.id !== undefined) lastId = fields.id;
        if (fields.data !== undefined) {
          queued.push({
            event: fields.event ?? 'message',
            id: fields.id ?? '',
            data: JSON.parse(fields.data) as Record<string, unknown>,
          });
        }
      }
      if (queued.length > 0) continue;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no stream message within ${deadlineMs} ms`);
      let timer: NodeJS.Timeout | undefined;
      const chunk = await Promise.race([
        reader.read(),
        new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => resolve('timeout'), left);
        }),
      ]).finally(() => clearTimeout(timer));
      if (chunk === 'timeout') throw new Error(`no stream message within ${deadlineMs} ms`);
      if (chunk.done) throw new Error('the stream ended');
      buffer += chunk.value;
    }
  }

  /** Reads until a block with an id arrived (the stream's head has one). */
  async function headId(deadlineMs: number): Promise<string> {
    const deadline = Date.now() + deadlineMs;
    while (lastId === '') {
      const chunk = await reader.read();
      if (chunk.done || Date.now() > deadline) throw new Error('no id in the stream head');
      buffer += chunk.value;
      const end = buffer.indexOf('\n\n');
      if (end < 0) continue;
      const head = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of head.split('\n')) if (line.startsWith('id: ')) lastId = line.slice(4);
    }
    return lastId;
  }

  return {
    next,
    headId,
    lastId: () => lastId,
    close() {
      controller.abort();
    },
  };
}

describe('GET /v1/stream', () => {
  it('streams a published event as an `event: event` message', async () => {
    const stream = await openStream('');
    const { event } = await api.app.control.publish({ type: 'live.test', data: { n: '1' } });
    let message = await stream.next(5000);
    // Job changes may interleave (no modules here, so none are expected): skip to the event.
    while (message.event !== 'event') message = await stream.next(5000);
    // The id is the resumable cursor: it names the event as the last one of its feed sent.
    expect(decodeLiveCursor(message.id).event).toEqual({
      at: event.createdAt,
      id: event.eventId,
    });
    expect(message.data).toMatchObject({
      eventId: event.eventId,
      type: 'live.test',
      correlationId: event.correlationId,
      data: { n: '1' },
    });
    stream.close();
    const health = await fetch(`${base}/healthz`);
    // Polling stopped with the client: the store is not asked again.
    const listJobs = vi.spyOn(api.app.control, 'listJobs');
    await sleep(1200);
    expect(listJobs).not.toHaveBeenCalled();
    expect(health.status).toBe(200);
  });

  it('keeps to one correlation id: an unrelated event never arrives, the related one does', async () => {
    const { event: root } = await api.app.control.publish({ type: 'live.root' });
    const stream = await openStream(`?correlationId=${encodeURIComponent(root.correlationId)}`);
    const { event: unrelated } = await api.app.control.publish({ type: 'live.other' });
    expect(unrelated.correlationId).not.toBe(root.correlationId);
    // Let the unrelated event be seen by at least one poll before the related one exists.
    await polledAgain();
    const marker = await runChild(api.app.backends.store, root, 'lang');
    const first = await stream.next(5000);
    expect(first.data.correlationId).toBe(root.correlationId);
    let message = first;
    while (message.event !== 'event') {
      message = await stream.next(5000);
      expect(message.data.correlationId).toBe(root.correlationId);
    }
    expect(message.data.eventId).toBe(marker.eventId);
    stream.close();
    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
  });

  it('keeps to one module: its jobs and the events it raised', async () => {
    const { event: root } = await api.app.control.publish({ type: 'live.root' });
    const stream = await openStream('?module=lang');
    await api.app.control.publish({ type: 'live.other' });
    await runChild(api.app.backends.store, root, 'other');
    await polledAgain();
    const child = await runChild(api.app.backends.store, root, 'lang');
    const seen: SseMessage[] = [];
    while (!seen.some((m) => m.event === 'event')) seen.push(await stream.next(5000));
    for (const m of seen) {
      if (m.event === 'job') expect(m.data.module).toBe('lang');
      else expect(m.data.source).toBe('lang');
    }
    expect(seen.at(-1)!.data.eventId).toBe(child.eventId);
    const job = seen.find((m) => m.event === 'job');
    expect(job?.data).toMatchObject({ module: 'lang', eventId: root.eventId });
    stream.close();
  });

  it('resumes after Last-Event-ID: exactly the changes missed while away, in order, then live', async () => {
    const store = api.app.backends.store;
    const stream = await openStream('');
    const { event: a } = await api.app.control.publish({ type: 'live.a' });
    const b = await runChild(store, a, 'lang');
    const before: SseMessage[] = [];
    // Read every change made so far (a and b can share a millisecond, and then come in id
    // order: stopping at b could leave a unread, and a resume from b rightly sends it).
    const seen = (id: string) => before.some((m) => m.event === 'event' && m.data.eventId === id);
    const seenJobDone = () => before.some((m) => m.event === 'job' && m.data.state === 'succeeded');
    while (!seen(a.eventId) || !seen(b.eventId) || !seenJobDone())
      before.push(await stream.next(5000));
    const lastId = before.at(-1)!.id;
    stream.close();

    // Changes while the client is away: a job run on a new event (its child too), one more event.
    const { event: c } = await api.app.control.publish({ type: 'live.c' });
    const d = await runChild(store, c, 'lang');
    const { event: e } = await api.app.control.publish({ type: 'live.e' });

    const listJobs = vi.spyOn(api.app.control, 'listJobs');
    const resumed = await openStream('', { 'Last-Event-ID': lastId });
    const caughtUp = [
      await resumed.next(5000),
      await resumed.next(5000),
      await resumed.next(5000),
      await resumed.next(5000),
    ];
    // Jobs first (the one job that changed, in its last state), then the events in feed order.
    expect(caughtUp[0]).toMatchObject({
      event: 'job',
      data: { module: 'lang', eventId: c.eventId, state: 'succeeded' },
    });
    const inFeedOrder = [c, d, e].sort((x, y) =>
      x.createdAt === y.createdAt
        ? x.eventId < y.eventId
          ? -1
          : 1
        : x.createdAt < y.createdAt
          ? -1
          : 1,
    );
    expect(caughtUp.slice(1).map((m) => [m.event, m.data.eventId])).toEqual(
      inFeedOrder.map((x) => ['event', x.eventId]),
    );
    // Every id is a cursor that has moved forward to the message it came with.
    const last = decodeLiveCursor(caughtUp[3]!.id);
    expect(last.event).toEqual({ at: inFeedOrder[2]!.createdAt, id: inFeedOrder[2]!.eventId });
    expect(last.job.id).toBe((caughtUp[0]!.data as { jobId: string }).jobId);

    // No duplicates: after two live polls, a new event is the very next message.
    const calls = listJobs.mock.calls.length;
    await waitFor('two polls of the resumed stream', () =>
      listJobs.mock.calls.length >= calls + 2 ? true : undefined,
    );
    const { event: f } = await api.app.control.publish({ type: 'live.f' });
    expect(await resumed.next(5000)).toMatchObject({
      event: 'event',
      data: { eventId: f.eventId },
    });
    resumed.close();
  });

  it('resumes from the stream head id, from a lastEventId query parameter; the header wins', async () => {
    const first = await openStream('?module=api');
    const head = await first.headId(5000);
    expect(() => decodeLiveCursor(head)).not.toThrow();
    first.close();
    // Nothing was received, but the head id still resumes: the event published meanwhile comes.
    const { event: x } = await api.app.control.publish({ type: 'live.x' });
    const second = await openStream(`?module=api&lastEventId=${head}`);
    const gotX = await second.next(5000);
    expect(gotX).toMatchObject({ event: 'event', data: { eventId: x.eventId } });
    second.close();
    const { event: y } = await api.app.control.publish({ type: 'live.y' });
    // A reconnecting browser keeps its URL (with the old query) and sends the newer header.
    const third = await openStream(`?module=api&lastEventId=${head}`, {
      'last-event-id': gotX.id,
    });
    expect(await third.next(5000)).toMatchObject({ event: 'event', data: { eventId: y.eventId } });
    third.close();
  });

  it('refuses a malformed Last-Event-ID or lastEventId with 400 before the stream starts', async () => {
    const wrongShape = Buffer.from(JSON.stringify(['x', 'y'])).toString('base64url');
    const badTime = encodeLiveCursor({
      job: { at: 'yesterday', id: 'j' },
      event: { at: new Date().toISOString(), id: 'e' },
    });
    for (const bad of ['nope!', wrongShape, badTime, 'e30']) {
      const res = await api.app.server!.inject({
        method: 'GET',
        url: '/v1/stream',
        headers: { 'last-event-id': bad },
      });
      expect(expectError(res, 400, 'validation_failed')).toContain('Last-Event-ID');
      const query = await api.app.server!.inject({
        method: 'GET',
        url: `/v1/stream?lastEventId=${encodeURIComponent(bad)}`,
      });
      expect(expectError(query, 400, 'validation_failed')).toContain('lastEventId');
    }
    // Over a real connection too: an error body, not an event stream.
    const res = await fetch(`${base}/v1/stream`, { headers: { 'Last-Event-ID': 'nope' } });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toContain('application/json');
    expect(await res.json()).toMatchObject({ error: { code: 'validation_failed' } });
  });

  it('refuses a Last-Event-ID too far behind to catch up, rather than losing changes', async () => {
    const store = api.app.backends.store;
    const cursor: LiveCursor = {
      job: { at: new Date(0).toISOString(), id: '' },
      event: { at: new Date(0).toISOString(), id: '' },
    };
    const { event: root } = await api.app.control.publish({ type: 'live.many' });
    for (let i = 0; i < 10_000; i++)
      await store.insertRootEvent({
        ...root,
        eventId: `${root.eventId}-${i}`,
        correlationId: `${root.correlationId}-${i}`,
      });
    const res = await api.app.server!.inject({
      method: 'GET',
      url: '/v1/stream',
      headers: { 'last-event-id': encodeLiveCursor(cursor) },
    });
    expect(expectError(res, 400, 'validation_failed')).toContain('too far behind');
  });

  it('refuses a query parameter it does not know, in the error format', async () => {
    const res = await api.app.server!.inject({ method: 'GET', url: '/v1/stream?nope=1' });
    expectError(res, 400, 'validation_failed');
  });

  it('answers an in-process request with the stream head and ends it', async () => {
    const res = await api.app.server!.inject({ method: 'GET', url: '/v1/stream?module=m' });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/event-stream');
    expect(res.body).toContain(': connected');
  });
});

describe('live stream cursors', () => {
  const at = (ms: number) => new Date(ms).toISOString();

  it('round-trip through an opaque one-line id', () => {
    const cursor: LiveCursor = {
      job: { at: at(1000), id: 'job-1' },
      event: { at: at(2000), id: 'évènement\nwith "quotes"' },
    };
    const id = encodeLiveCursor(cursor);
    expect(id).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(decodeLiveCursor(id)).toEqual(cursor);
  });

  it('order positions by time, then by id', () => {
    expect(isAfter({ at: at(2), id: 'a' }, { at: at(1), id: 'z' })).toBe(true);
    expect(isAfter({ at: at(1), id: 'b' }, { at: at(1), id: 'a' })).toBe(true);
    expect(isAfter({ at: at(1), id: 'a' }, { at: at(1), id: 'a' })).toBe(false);
    expect(isAfter({ at: at(1), id: 'z' }, { at: at(2), id: 'a' })).toBe(false);
  });

  it('name the parameter a malformed cursor came in', () => {
    expect(() => decodeLiveCursor('%%', 'lastEventId')).toThrow(/lastEventId/);
    expect(() => decodeLiveCursor('')).toThrow(/Last-Event-ID/);
  });
});
