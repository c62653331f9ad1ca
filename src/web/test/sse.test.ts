// @vitest-environment happy-dom
import { describe, expect, it } from 'vitest';
import { openStream, type StreamMessage } from '../lib/sse.js';
import { setToken } from '../lib/api.js';

function body(text: string): ReadableStream<Uint8Array> {
  return new ReadableStream({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(text));
      controller.close();
    },
  });
}

async function until(what: string, check: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('the live stream client', () => {
  it('resumes with Last-Event-ID after a drop, sends the token as a header, never in the URL', async () => {
    setToken('secret-token');
    const calls: { url: string; headers: Record<string, string> }[] = [];
    const replies = [
      'retry: 2000\nid: head\n: connected\n\nevent: job\nid: c1\ndata: {"n":1}\n\n',
      'event: job\nid: c2\ndata: {"n":2}\n\n',
    ];
    const fetchImpl = ((url: string, init: RequestInit) => {
      calls.push({ url, headers: init.headers as Record<string, string> });
      const text = replies.shift();
      if (text === undefined) return new Promise<Response>(() => {});
      return Promise.resolve(new Response(body(text), { status: 200 }));
    }) as typeof fetch;
    const got: StreamMessage[] = [];
    const stop = openStream({ onMessage: (m) => got.push(m), fetchImpl, retryMs: 1 });
    await until('both messages', () => got.length === 2);
    stop();
    expect(got.map((m) => m.data)).toEqual(['{"n":1}', '{"n":2}']);
    expect(calls[0]!.headers['last-event-id']).toBeUndefined();
    expect(calls[1]!.headers['last-event-id']).toBe('c1');
    for (const call of calls) {
      expect(call.url).not.toContain('secret-token');
      expect(call.headers.authorization).toBe('Bearer secret-token');
    }
    setToken(null);
  });

  it('starts afresh and asks for a reload when the server refuses the cursor', async () => {
    const replies: Response[] = [
      new Response(body('id: old\n: connected\n\n'), { status: 200 }),
      new Response('{"error":{"code":"validation_failed","message":"too far behind"}}', {
        status: 400,
      }),
    ];
    const seen: (string | undefined)[] = [];
    const fetchImpl = ((_url: string, init: RequestInit) => {
      seen.push((init.headers as Record<string, string>)['last-event-id']);
      const next = replies.shift();
      return next === undefined ? new Promise<Response>(() => {}) : Promise.resolve(next);
    }) as typeof fetch;
    let resets = 0;
    const stop = openStream({
      onMessage: () => {},
      onReset: () => resets++,
      fetchImpl,
      retryMs: 1,
    });
    await until('a fresh connection', () => seen.length === 3);
    stop();
    expect(resets).toBe(1);
    expect(seen).toEqual([undefined, 'old', undefined]);
  });
});
