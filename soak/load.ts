import { randomBytes } from 'node:crypto';
import type { Rng } from './rng.js';
import { sleep } from './procs.js';

/**
 * The soak's load: root events at a steady rate, half through `POST /v1/events` (files
 * uploaded first with `PUT /v1/blobs`), half through the gateway (multipart or JSON), with
 * small files, many small files and large ones; a share of bad inputs and of bad requests.
 * Every root carries an idempotency key and is retried with the same key until an answer
 * says it was stored, so "accepted" is exact: the checker demands each accepted root and its
 * whole tree, and no root twice.
 */

export type InputClass = 'good' | 'bad' | 'badout';
export type SizeClass = 'small' | 'many' | 'large';

export interface AcceptedRoot {
  key: string;
  eventId: string;
  inputClass: InputClass;
  size: SizeClass;
  via: 'events' | 'gateway';
}

/** One HTTP answer (or its absence) seen by the load or the prober. */
export interface Sample {
  at: number;
  /** When the answer (or the failure) came. */
  endedAt?: number;
  what: string;
  /** HTTP status, or 0 for a refused/reset connection, -1 for no answer within the hang limit. */
  status: number;
  /** For status >= 400: whether the body was `{error:{code,message}}`. */
  errorFormat?: boolean;
  code?: string;
  /** For status 0: what the connection failed with (the fetch error's cause), to tell a
   * refused connection from a reset one. */
  failure?: string;
}

/** Requests that must be refused with a 4xx in the error format, by class. */
export const BAD_REQUESTS = [
  'invalid-event-type',
  'path-traversal',
  'unknown-blob',
  'malformed-json',
  'oversized-idempotency-key',
  'wrong-media-type',
] as const;
export type BadRequestClass = (typeof BAD_REQUESTS)[number];

export const HANG_MS = 20_000;

export class Api {
  readonly samples: Sample[] = [];

  constructor(
    readonly url: string,
    private readonly token: string,
  ) {}

  /** Sends a request, records a sample, returns status and parsed body (if JSON). */
  async call(
    what: string,
    method: string,
    path: string,
    init: { body?: string | Buffer | FormData; headers?: Record<string, string> } = {},
  ): Promise<{ status: number; body: unknown }> {
    const at = Date.now();
    let status: number;
    let body: unknown;
    let failure: string | undefined;
    try {
      const response = await fetch(`${this.url}${path}`, {
        method,
        ...(init.body === undefined ? {} : { body: init.body }),
        headers: { authorization: `Bearer ${this.token}`, ...init.headers },
        signal: AbortSignal.timeout(HANG_MS),
      });
      status = response.status;
      const text = await response.text();
      try {
        body = JSON.parse(text);
      } catch {
        body = text;
      }
    } catch (err) {
      status = (err as Error).name === 'TimeoutError' ? -1 : 0;
      const cause = (err as Error & { cause?: { code?: string; message?: string } }).cause;
      failure = cause?.code ?? cause?.message ?? (err as Error).message;
    }
    const sample: Sample = { at, endedAt: Date.now(), what, status };
    if (failure !== undefined && status === 0) sample.failure = failure;
    if (status >= 400) {
      const error = (body as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
      sample.errorFormat = typeof error?.code === 'string' && typeof error.message === 'string';
      if (typeof error?.code === 'string') sample.code = error.code;
    }
    this.samples.push(sample);
    return { status, body };
  }

  async putBlob(bytes: Buffer): Promise<{ sha256: string } | undefined> {
    const r = await this.call('put-blob', 'PUT', '/v1/blobs', {
      body: bytes,
      headers: { 'content-type': 'application/octet-stream' },
    });
    return r.status === 201 ? (r.body as { sha256: string }) : undefined;
  }
}

function filesFor(size: SizeClass): { path: string; bytes: Buffer }[] {
  if (size === 'large') return [{ path: 'large.bin', bytes: randomBytes(4 * 1024 * 1024) }];
  if (size === 'many')
    return Array.from({ length: 20 }, (_, i) => ({
      path: `many/part-${String(i).padStart(2, '0')}.txt`,
      bytes: randomBytes(512 + i * 64),
    }));
  return [{ path: 'small.txt', bytes: randomBytes(2048) }];
}

/** Publishes one root; true once an answer says it is stored (201 or 200). */
async function publishOnce(
  api: Api,
  root: Omit<AcceptedRoot, 'eventId'>,
  n: number,
  files: { path: string; bytes: Buffer }[],
) {
  const data = { k: root.key, n: String(n), class: root.inputClass, size: root.size };
  if (root.via === 'events') {
    const refs: { path: string; sha256: string }[] = [];
    for (const f of files) {
      const ref = await api.putBlob(f.bytes);
      if (ref === undefined) return undefined;
      refs.push({ path: f.path, sha256: ref.sha256 });
    }
    return api.call('publish', 'POST', '/v1/events', {
      body: JSON.stringify({ type: 'soak.root', data, files: refs }),
      headers: { 'content-type': 'application/json', 'idempotency-key': root.key },
    });
  }
  const form = new FormData();
  for (const [k, v] of Object.entries(data)) form.append(k, v);
  for (const f of files) form.append('file', new Blob([f.bytes]), f.path);
  return api.call('gateway', 'POST', '/v1/gateway/soak.root', {
    body: form,
    headers: { 'idempotency-key': root.key },
  });
}

export interface LoadResult {
  accepted: AcceptedRoot[];
  /** Keys never acknowledged before the end (not counted as accepted). */
  unacknowledged: string[];
  badRequests: Record<
    BadRequestClass,
    { tried: number; refused4xx: number; unavailable: number; other: number }
  >;
}

/** A bad request of `kind`; returns the status. */
async function badRequest(api: Api, kind: BadRequestClass): Promise<number> {
  const json = { 'content-type': 'application/json' };
  const send = (body: string, headers: Record<string, string> = json) =>
    api.call(`bad:${kind}`, 'POST', '/v1/events', { body, headers });
  switch (kind) {
    case 'invalid-event-type':
      return (await send(JSON.stringify({ type: 'no spaces/allowed..' }))).status;
    case 'path-traversal':
      return (
        await send(
          JSON.stringify({
            type: 'soak.root',
            files: [{ path: '../../etc/passwd', sha256: 'a'.repeat(64) }],
          }),
        )
      ).status;
    case 'unknown-blob':
      return (
        await send(
          JSON.stringify({ type: 'soak.bogus', files: [{ path: 'x', sha256: 'b'.repeat(64) }] }),
        )
      ).status;
    case 'malformed-json':
      return (await send('{"type": "soak.root", ')).status;
    case 'oversized-idempotency-key':
      return (
        await send(JSON.stringify({ type: 'soak.bogus' }), {
          ...json,
          'idempotency-key': 'k'.repeat(300),
        })
      ).status;
    case 'wrong-media-type':
      return (
        await api.call(`bad:${kind}`, 'POST', '/v1/gateway/soak.bogus', {
          body: 'plain text',
          headers: { 'content-type': 'text/plain' },
        })
      ).status;
  }
}

/**
 * Runs the load until `endAt`: one root every `1000 / rate` ms (at most `maxInFlight` at once;
 * a tick with no room is skipped), and a bad request every 5th tick. Roots not yet
 * acknowledged at `endAt` keep being retried until `endAt + graceMs`.
 */
export async function runLoad(
  api: Api,
  rng: Rng,
  options: { seed: number; rate: number; endAt: number; graceMs: number; maxInFlight?: number },
): Promise<LoadResult> {
  const accepted: AcceptedRoot[] = [];
  const unacknowledged: string[] = [];
  const badRequests = Object.fromEntries(
    BAD_REQUESTS.map((k) => [k, { tried: 0, refused4xx: 0, unavailable: 0, other: 0 }]),
  ) as LoadResult['badRequests'];
  const inFlight = new Set<Promise<void>>();
  const maxInFlight = options.maxInFlight ?? 6;
  let tick = 0;
  const intervalMs = 1000 / options.rate;
  let next = Date.now();
  while (Date.now() < options.endAt) {
    tick += 1;
    if (tick % 5 === 0) {
      const kind = BAD_REQUESTS[(tick / 5) % BAD_REQUESTS.length]!;
      const p = badRequest(api, kind).then((status) => {
        badRequests[kind].tried += 1;
        if (status >= 400 && status < 500) badRequests[kind].refused4xx += 1;
        else if (status === 0 || status === 503) badRequests[kind].unavailable += 1;
        else badRequests[kind].other += 1;
      });
      const tracked = p.finally(() => inFlight.delete(tracked));
      inFlight.add(tracked);
    }
    if (inFlight.size < maxInFlight) {
      const r = rng.next();
      const root: Omit<AcceptedRoot, 'eventId'> = {
        key: `soak-${options.seed}-${tick}`,
        inputClass: r < 0.85 ? 'good' : r < 0.95 ? 'bad' : 'badout',
        size: ((s) => (s < 0.7 ? 'small' : s < 0.9 ? 'many' : 'large'))(rng.next()),
        via: rng.next() < 0.5 ? 'events' : 'gateway',
      };
      const n = tick;
      // The same bytes on every retry: the same idempotency key with other content is a 409.
      const files = filesFor(root.size);
      const p = (async () => {
        while (Date.now() < options.endAt + options.graceMs) {
          const answer = await publishOnce(api, root, n, files);
          if (answer !== undefined && (answer.status === 201 || answer.status === 200)) {
            accepted.push({ ...root, eventId: (answer.body as { eventId: string }).eventId });
            return;
          }
          await sleep(1000);
        }
        unacknowledged.push(root.key);
      })();
      const tracked = p.finally(() => inFlight.delete(tracked));
      inFlight.add(tracked);
    }
    next += intervalMs;
    await sleep(Math.max(0, next - Date.now()));
  }
  await Promise.all(inFlight);
  return { accepted, unacknowledged, badRequests };
}

/** Probes the API every `everyMs` until stopped: its samples show each outage's answers. */
export function startProber(api: Api, everyMs = 500): { stop(): Promise<void> } {
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      await api.call('probe', 'GET', '/v1/events?limit=1');
      await sleep(everyMs);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
    },
  };
}
