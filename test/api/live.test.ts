import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { expectError, runChild, startApiApp, type ApiApp } from '../support/api-app.js';

/** One parsed Server-Sent Events message. */
interface SseMessage {
  event: string;
  id: string;
  data: Record<string, unknown>;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

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

/** Opens the stream and reads its messages (comments skipped) as they arrive. */
async function openStream(query: string) {
  const controller = new AbortController();
  const res = await fetch(`${base}/v1/stream${query}`, { signal: controller.signal });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/event-stream');
  expect(res.headers.get('cache-control')).toBe('no-cache');
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
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

  return {
    next,
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
    expect(message.id).toBe(event.eventId);
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
    await sleep(1200);
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
    await sleep(100);
    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
  });

  it('keeps to one module: its jobs and the events it raised', async () => {
    const { event: root } = await api.app.control.publish({ type: 'live.root' });
    const stream = await openStream('?module=lang');
    await api.app.control.publish({ type: 'live.other' });
    await runChild(api.app.backends.store, root, 'other');
    await sleep(1200);
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
