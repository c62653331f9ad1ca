import { authHeaders, ApiError, qs } from './api.js';

/**
 * The live stream (`GET /v1/stream`) read with `fetch`, not `EventSource`: `EventSource` cannot
 * send the token as a header, and a token in the URL would end up in logs. After a drop it
 * reconnects with the last `id` it received as `Last-Event-ID`, so nothing is missed; when the
 * server says the cursor is too far behind, it starts afresh and tells the caller to reload.
 */

export interface StreamMessage {
  event: string;
  data: string;
  id: string | null;
}

export interface StreamOptions {
  correlationId?: string;
  module?: string;
  onMessage(message: StreamMessage): void;
  onStatus?(status: 'connecting' | 'live' | 'reconnecting' | 'stopped', detail?: string): void;
  /** The stream could not resume: whatever the caller shows may be stale, reload it. */
  onReset?(): void;
  fetchImpl?: typeof fetch;
  retryMs?: number;
}

/** Parses SSE text: returns the complete messages and the unparsed rest. */
export function parseSse(buffer: string): {
  messages: StreamMessage[];
  ids: string[];
  rest: string;
} {
  const messages: StreamMessage[] = [];
  const ids: string[] = [];
  const blocks = buffer.replace(/\r\n?/g, '\n').split('\n\n');
  const rest = blocks.pop() ?? '';
  for (const block of blocks) {
    let event = 'message';
    let id: string | null = null;
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line === '' || line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
      else if (field === 'id') id = value;
    }
    if (id !== null) ids.push(id);
    if (data.length > 0) messages.push({ event, data: data.join('\n'), id });
  }
  return { messages, ids, rest };
}

/** Opens the stream and keeps it open until the returned function is called. */
export function openStream(options: StreamOptions): () => void {
  const doFetch = options.fetchImpl ?? fetch.bind(globalThis);
  const retryMs = options.retryMs ?? 2000;
  let lastId: string | null = null;
  let stopped = false;
  let controller: AbortController | null = null;
  let timer: ReturnType<typeof setTimeout> | null = null;

  const schedule = (detail: string) => {
    if (stopped) return;
    options.onStatus?.('reconnecting', detail);
    timer = setTimeout(() => void connect(), retryMs);
  };

  async function connect(): Promise<void> {
    if (stopped) return;
    controller = new AbortController();
    options.onStatus?.('connecting');
    const url = `/v1/stream${qs({ correlationId: options.correlationId, module: options.module })}`;
    try {
      const res = await doFetch(url, {
        signal: controller.signal,
        headers: authHeaders(lastId === null ? {} : { 'last-event-id': lastId }),
        cache: 'no-store',
      });
      if (res.status === 400 && lastId !== null) {
        // Too far behind (or an unknown cursor): start live again and reload what is shown.
        lastId = null;
        options.onReset?.();
        return schedule('resuming was refused; reloading');
      }
      if (!res.ok || res.body === null) {
        const error = new ApiError(res.status, 'stream', `live stream: ${res.status}`);
        if (res.status === 401 || res.status === 403) {
          stopped = true;
          options.onStatus?.('stopped', error.message);
          return;
        }
        return schedule(error.message);
      }
      options.onStatus?.('live');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        const parsed = parseSse(buffer);
        buffer = parsed.rest;
        const newest = parsed.ids.at(-1);
        if (newest !== undefined) lastId = newest;
        for (const message of parsed.messages) options.onMessage(message);
      }
      schedule('the stream ended');
    } catch (err) {
      if (stopped) return;
      schedule(err instanceof Error ? err.message : String(err));
    }
  }

  void connect();
  return () => {
    stopped = true;
    if (timer !== null) clearTimeout(timer);
    controller?.abort();
    options.onStatus?.('stopped');
  };
}
