import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildServer } from '../../src/api/server.js';
import type { IonApp } from '../../src/app/ion-app.js';
import { expectError, startApiApp, type ApiApp } from '../support/api-app.js';
import { createLogger } from '../../src/app/logger.js';
import type { IonEvent } from '../../src/core/types.js';

type Injected = LightMyRequestResponse;

const BODY_LIMIT = 64 * 1024;

let fixture: ApiApp;
let app: IonApp;

beforeEach(async () => {
  fixture = await startApiApp('ion-gateway-', BODY_LIMIT);
  app = fixture.app;
});

afterEach(() => fixture.stop());

function inject(opts: InjectOptions): Promise<Injected> {
  return app.server!.inject(opts);
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

async function eventOf(res: Injected): Promise<IonEvent> {
  const { eventId } = res.json<{ eventId: string }>();
  const event = await app.backends.store.getEvent(eventId);
  expect(event, `event ${eventId} is stored`).not.toBeNull();
  return event!;
}

/** A multipart body built by hand, so the tests control filenames and part order exactly. */
function multipartBody(
  parts: ({ name: string; value: string } | { name: string; filename: string; bytes: Buffer })[],
): { body: Buffer; contentType: string } {
  const boundary = `----ion-test-${randomBytes(8).toString('hex')}`;
  const chunks: Buffer[] = [];
  for (const part of parts) {
    const disposition =
      'filename' in part
        ? `form-data; name="${part.name}"; filename="${part.filename}"`
        : `form-data; name="${part.name}"`;
    const type = 'filename' in part ? 'Content-Type: application/octet-stream\r\n' : '';
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${disposition}\r\n${type}\r\n`));
    chunks.push('filename' in part ? part.bytes : Buffer.from(part.value));
    chunks.push(Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}

describe('POST /v1/gateway/:eventType with a JSON body', () => {
  it('publishes a root event of the path type whose metadata is the body, numbers and booleans as text', async () => {
    const res = await inject({
      method: 'POST',
      url: '/v1/gateway/order.placed',
      payload: { customer: 'acme', items: 3, express: true },
    });
    expect(res.statusCode, res.body).toBe(201);
    const body = res.json<{ eventId: string; correlationId: string; created: boolean }>();
    expect(body.created).toBe(true);
    expect(body.correlationId).toBe(body.eventId);
    const event = await eventOf(res);
    expect(event.type).toBe('order.placed');
    expect(event.parentEventId).toBeNull();
    expect(event.data).toEqual([
      { key: 'customer', value: 'acme' },
      { key: 'items', value: '3' },
      { key: 'express', value: 'true' },
    ]);
    expect(event.files).toEqual([]);
  });

  it('refuses nested values, naming the field', async () => {
    const res = await inject({
      method: 'POST',
      url: '/v1/gateway/order.placed',
      payload: { customer: { name: 'acme' } },
    });
    expect(expectError(res, 400, 'validation_failed')).toContain('body.customer');
  });

  it('refuses a JSON body that is not an object', async () => {
    const res = await inject({
      method: 'POST',
      url: '/v1/gateway/order.placed',
      headers: { 'content-type': 'application/json' },
      payload: '["a"]',
    });
    expectError(res, 400, 'validation_failed');
  });

  it('refuses a bad event type in the path and an unsupported body type', async () => {
    expect(
      expectError(
        await inject({ method: 'POST', url: '/v1/gateway/has%20space', payload: { a: 'b' } }),
        400,
        'validation_failed',
      ),
    ).toContain('has space');
    expectError(
      await inject({
        method: 'POST',
        url: '/v1/gateway/order.placed',
        headers: { 'content-type': 'text/plain' },
        payload: 'hello',
      }),
      415,
      'unsupported_media_type',
    );
  });

  it('refuses an ion.* event type on every publish path: the API, the typed gateway and CloudEvents', async () => {
    const api = await inject({
      method: 'POST',
      url: '/v1/events',
      payload: { type: 'ion.trace.settled', data: {} },
    });
    expect(expectError(api, 400, 'validation_failed')).toContain(
      '"ion.trace.settled" is reserved: event types starting with "ion." are raised by Ion only',
    );
    const typed = await inject({ method: 'POST', url: '/v1/gateway/ion.custom', payload: {} });
    expect(expectError(typed, 400, 'validation_failed')).toMatch(
      /in the path: "ion.custom" is reserved/,
    );
    const cloud = await inject({
      method: 'POST',
      url: '/v1/gateway/cloudevents',
      headers: {
        'ce-specversion': '1.0',
        'ce-id': 'x-1',
        'ce-source': '/test',
        'ce-type': 'ion.trace.settled',
        'content-type': 'application/json',
      },
      payload: {},
    });
    expect(expectError(cloud, 400, 'validation_failed')).toMatch(
      /headers.ce-type: "ion.trace.settled" is reserved/,
    );
    expect(await app.backends.store.listEvents({ type: 'ion.trace.settled' })).toEqual({
      events: [],
      nextCursor: null,
    });
  });

  it('returns the same event with created false when the Idempotency-Key is retried', async () => {
    const send = (payload: Record<string, unknown>) =>
      inject({
        method: 'POST',
        url: '/v1/gateway/order.placed',
        headers: { 'idempotency-key': 'order-77' },
        payload,
      });
    const first = await send({ customer: 'acme' });
    expect(first.statusCode).toBe(201);
    const retry = await send({ customer: 'acme' });
    expect(retry.statusCode, retry.body).toBe(200);
    expect(retry.json()).toEqual({ ...first.json<object>(), created: false });
    const conflicting = await send({ customer: 'globex' });
    expect(expectError(conflicting, 409, 'conflict')).toContain('order-77');
  });
});

describe('POST /v1/gateway/:eventType with a multipart upload', () => {
  it('stores each file part at its filename (folders kept) and the fields as metadata', async () => {
    const page = randomBytes(5000);
    const notes = Buffer.from('hello notes\n');
    const { body, contentType } = multipartBody([
      { name: 'batch', value: 'b-1' },
      { name: 'scan', filename: 'scans/page1.png', bytes: page },
      { name: 'notes', filename: 'notes.txt', bytes: notes },
      { name: 'operator', value: 'kim' },
    ]);
    const res = await inject({
      method: 'POST',
      url: '/v1/gateway/file.uploaded',
      headers: { 'content-type': contentType },
      payload: body,
    });
    expect(res.statusCode, res.body).toBe(201);
    const event = await eventOf(res);
    expect(event.type).toBe('file.uploaded');
    expect(event.data).toEqual([
      { key: 'batch', value: 'b-1' },
      { key: 'operator', value: 'kim' },
    ]);
    expect(event.files).toEqual([
      { path: 'scans/page1.png', sha256: sha256(page), size: page.length },
      { path: 'notes.txt', sha256: sha256(notes), size: notes.length },
    ]);
    const stored = await inject({ method: 'GET', url: `/v1/blobs/${sha256(page)}` });
    expect(Buffer.compare(stored.rawPayload, page)).toBe(0);
  });

  it('uses the field name as the path when the filename is empty', async () => {
    const bytes = randomBytes(10);
    const { body, contentType } = multipartBody([
      { name: 'inbox/report.csv', filename: '', bytes },
    ]);
    const res = await inject({
      method: 'POST',
      url: '/v1/gateway/file.uploaded',
      headers: { 'content-type': contentType },
      payload: body,
    });
    expect(res.statusCode, res.body).toBe(201);
    expect((await eventOf(res)).files).toEqual([
      { path: 'inbox/report.csv', sha256: sha256(bytes), size: 10 },
    ]);
  });

  it('refuses a filename that climbs out with ".." and a path sent twice', async () => {
    const escape = multipartBody([{ name: 'f', filename: '../etc/passwd', bytes: randomBytes(4) }]);
    const message = expectError(
      await inject({
        method: 'POST',
        url: '/v1/gateway/file.uploaded',
        headers: { 'content-type': escape.contentType },
        payload: escape.body,
      }),
      400,
      'validation_failed',
    );
    expect(message).toContain('../etc/passwd');
    const twice = multipartBody([
      { name: 'a', filename: 'x.bin', bytes: randomBytes(4) },
      { name: 'b', filename: './x.bin', bytes: randomBytes(4) },
    ]);
    expectError(
      await inject({
        method: 'POST',
        url: '/v1/gateway/file.uploaded',
        headers: { 'content-type': twice.contentType },
        payload: twice.body,
      }),
      400,
      'validation_failed',
    );
  });

  it('refuses a malformed multipart body with 400', async () => {
    const res = await inject({
      method: 'POST',
      url: '/v1/gateway/file.uploaded',
      headers: { 'content-type': 'multipart/form-data; boundary=xyz' },
      payload:
        '--xyz\r\nContent-Disposition: form-data; name="a"; filename="a.txt"\r\n\r\nunterminated',
    });
    expectError(res, 400, 'validation_failed');
  });

  it('answers a retried upload with the same event and a changed file with 409', async () => {
    const bytes = randomBytes(2000);
    const send = (file: Buffer) => {
      const { body, contentType } = multipartBody([{ name: 'f', filename: 'a.bin', bytes: file }]);
      return inject({
        method: 'POST',
        url: '/v1/gateway/file.uploaded',
        headers: { 'content-type': contentType, 'idempotency-key': 'upload-1' },
        payload: body,
      });
    };
    const first = await send(bytes);
    expect(first.statusCode, first.body).toBe(201);
    const retry = await send(bytes);
    expect(retry.statusCode).toBe(200);
    expect(retry.json<{ eventId: string; created: boolean }>()).toEqual({
      ...first.json<object>(),
      created: false,
    });
    expectError(await send(randomBytes(2000)), 409, 'conflict');
  });

  it('refuses a file over the configured size with 413 payload_too_large, then accepts one at the limit', async () => {
    const limited = buildServer({
      control: app.control,
      logger: createLogger('silent'),
      gatewayMaxFileBytes: 1000,
    });
    try {
      const { body, contentType } = multipartBody([
        { name: 'f', filename: 'big.bin', bytes: randomBytes(5000) },
      ]);
      const res = await limited.inject({
        method: 'POST',
        url: '/v1/gateway/file.uploaded',
        headers: { 'content-type': contentType },
        payload: body,
      });
      expect(expectError(res, 413, 'payload_too_large')).toContain('1000');
      const small = multipartBody([{ name: 'f', filename: 'ok.bin', bytes: randomBytes(1000) }]);
      const ok = await limited.inject({
        method: 'POST',
        url: '/v1/gateway/file.uploaded',
        headers: { 'content-type': small.contentType },
        payload: small.body,
      });
      expect(ok.statusCode, ok.body).toBe(201);
    } finally {
      await limited.close();
    }
  });
});

/**
 * The uploading client, run in a child process so that this process's memory is the
 * server's alone (fetch itself holds on to a streamed request body in some Node versions).
 * It generates the file on the fly, streams it with fetch, and reports the file's sha256.
 */
const UPLOADER = `
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
const [url, boundary, size] = process.argv.slice(1);
const fileBytes = Number(size);
const chunk = randomBytes(1024 * 1024);
const head = Buffer.from(
  '--' + boundary + '\\r\\nContent-Disposition: form-data; name="kind"\\r\\n\\r\\nbig\\r\\n' +
  '--' + boundary + '\\r\\nContent-Disposition: form-data; name="f"; filename="big/data.bin"\\r\\n' +
  'Content-Type: application/octet-stream\\r\\n\\r\\n');
const tail = Buffer.from('\\r\\n--' + boundary + '--\\r\\n');
const hash = createHash('sha256');
let sent = 0;
const body = new ReadableStream({
  start(controller) { controller.enqueue(head); },
  pull(controller) {
    if (sent >= fileBytes) { controller.enqueue(tail); controller.close(); return; }
    const piece = Buffer.from(chunk);
    piece.writeUInt32BE(sent / chunk.length, 0); // every MiB differs
    hash.update(piece);
    sent += piece.length;
    controller.enqueue(piece);
  },
});
const res = await fetch(url, {
  method: 'POST',
  headers: { 'content-type': 'multipart/form-data; boundary=' + boundary },
  body,
  duplex: 'half',
});
const text = await res.text();
process.stdout.write(JSON.stringify({ status: res.status, text, sent, sha256: hash.digest('hex') }));
`;

describe('a large multipart upload over a real socket', () => {
  it('streams 200 MiB to the blob store while the server grows far less than the file', async () => {
    const address = app.server!.server.address(); // beforeEach started it on a free port
    if (address === null || typeof address === 'string') throw new Error('not listening on TCP');
    const url = `http://${address.address}:${address.port}/v1/gateway/file.uploaded`;
    const fileBytes = 200 * 1024 * 1024;
    const boundary = `----ion-big-${randomBytes(8).toString('hex')}`;

    global.gc?.();
    const baseline = process.memoryUsage().rss;
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, process.memoryUsage().rss);
    }, 10);
    let output = '';
    let errors = '';
    try {
      const child = spawn(
        process.execPath,
        ['--input-type=module', '-e', UPLOADER, url, boundary, String(fileBytes)],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr.on('data', (d: Buffer) => (errors += d.toString()));
      const [code] = (await once(child, 'exit')) as [number | null];
      expect(code, errors).toBe(0);
    } finally {
      clearInterval(sampler);
    }
    const result = JSON.parse(output) as {
      status: number;
      text: string;
      sent: number;
      sha256: string;
    };
    expect(result.status, result.text).toBe(201);
    expect(result.sent).toBe(fileBytes);
    const { eventId } = JSON.parse(result.text) as { eventId: string };
    const event = (await app.backends.store.getEvent(eventId))!;
    expect(event.data).toEqual([{ key: 'kind', value: 'big' }]);
    expect(event.files).toEqual([{ path: 'big/data.bin', sha256: result.sha256, size: fileBytes }]);
    const growth = peak - baseline;
    expect(growth, `RSS grew by ${Math.round(growth / 2 ** 20)} MiB`).toBeLessThan(fileBytes / 3);
  });
});

describe('POST /v1/gateway/cloudevents', () => {
  const ce = {
    'ce-specversion': '1.0',
    'ce-type': 'com.example.order.created',
    'ce-source': 'https://shop.example/orders',
    'ce-id': 'A234-1234-1234',
  };

  it('accepts binary mode: attributes as ce_ metadata, a JSON object data as metadata', async () => {
    const res = await inject({
      method: 'POST',
      url: '/v1/gateway/cloudevents',
      headers: {
        ...ce,
        'ce-subject': 'order%2F42',
        'ce-time': '2024-05-01T10:00:00Z',
        'ce-traceparent': '00-abc-def-01',
        'content-type': 'application/json',
      },
      payload: { orderId: '42', total: 9.5 },
    });
    expect(res.statusCode, res.body).toBe(201);
    const event = await eventOf(res);
    expect(event.type).toBe('com.example.order.created');
    const meta = Object.fromEntries(event.data.map((kv) => [kv.key, kv.value]));
    expect(meta).toEqual({
      ce_specversion: '1.0',
      ce_type: 'com.example.order.created',
      ce_source: 'https://shop.example/orders',
      ce_id: 'A234-1234-1234',
      ce_subject: 'order/42',
      ce_time: '2024-05-01T10:00:00Z',
      ce_traceparent: '00-abc-def-01',
      ce_datacontenttype: 'application/json',
      orderId: '42',
      total: '9.5',
    });
    expect(event.files).toEqual([]);
  });

  it('accepts a binary-mode event without data: only its attributes become metadata', async () => {
    const res = await inject({ method: 'POST', url: '/v1/gateway/cloudevents', headers: ce });
    expect(res.statusCode, res.body).toBe(201);
    const event = await eventOf(res);
    expect(event.data.map((kv) => kv.key)).toEqual([
      'ce_specversion',
      'ce_type',
      'ce_source',
      'ce_id',
    ]);
    expect(event.files).toEqual([]);
  });

  it('keeps binary-mode data that is not JSON as the file "data"', async () => {
    const bytes = randomBytes(3000);
    const res = await inject({
      method: 'POST',
      url: '/v1/gateway/cloudevents',
      headers: { ...ce, 'content-type': 'image/png' },
      payload: bytes,
    });
    expect(res.statusCode, res.body).toBe(201);
    const event = await eventOf(res);
    expect(event.files).toEqual([{ path: 'data', sha256: sha256(bytes), size: 3000 }]);
    expect(event.data).toContainEqual({ key: 'ce_datacontenttype', value: 'image/png' });
  });

  it('accepts structured mode, with nested data kept whole as data.json', async () => {
    const data = { orderId: '42', lines: [{ sku: 'x', qty: 2 }] };
    const res = await inject({
      method: 'POST',
      url: '/v1/gateway/cloudevents',
      headers: { 'content-type': 'application/cloudevents+json; charset=utf-8' },
      payload: JSON.stringify({
        specversion: '1.0',
        type: 'com.example.order.created',
        source: '/orders',
        id: 'evt-1',
        subject: 'order-42',
        datacontenttype: 'application/json',
        data,
      }),
    });
    expect(res.statusCode, res.body).toBe(201);
    const event = await eventOf(res);
    expect(event.type).toBe('com.example.order.created');
    expect(event.data).toEqual([
      { key: 'ce_specversion', value: '1.0' },
      { key: 'ce_type', value: 'com.example.order.created' },
      { key: 'ce_source', value: '/orders' },
      { key: 'ce_id', value: 'evt-1' },
      { key: 'ce_subject', value: 'order-42' },
      { key: 'ce_datacontenttype', value: 'application/json' },
      { key: 'orderId', value: '42' },
    ]);
    const json = Buffer.from(JSON.stringify(data));
    expect(event.files).toEqual([{ path: 'data.json', sha256: sha256(json), size: json.length }]);
  });

  it('stores structured-mode data_base64 as the file "data"', async () => {
    const bytes = randomBytes(100);
    const res = await inject({
      method: 'POST',
      url: '/v1/gateway/cloudevents',
      headers: { 'content-type': 'application/cloudevents+json' },
      payload: JSON.stringify({
        specversion: '1.0',
        type: 'blob.arrived',
        source: '/s',
        id: '1',
        data_base64: bytes.toString('base64'),
      }),
    });
    expect(res.statusCode, res.body).toBe(201);
    expect((await eventOf(res)).files).toEqual([
      { path: 'data', sha256: sha256(bytes), size: 100 },
    ]);
  });

  it('makes a redelivered CloudEvent (same source and id) the same root event', async () => {
    const send = (id: string, source = ce['ce-source']) =>
      inject({
        method: 'POST',
        url: '/v1/gateway/cloudevents',
        headers: { ...ce, 'ce-id': id, 'ce-source': source, 'content-type': 'application/json' },
        payload: { orderId: '42' },
      });
    const first = await send('dup-1');
    expect(first.statusCode, first.body).toBe(201);
    const again = await send('dup-1');
    expect(again.statusCode, again.body).toBe(200);
    expect(again.json()).toEqual({ ...first.json<object>(), created: false });
    const otherId = await send('dup-2');
    expect(otherId.statusCode).toBe(201);
    const otherSource = await send('dup-1', 'https://elsewhere.example');
    expect(otherSource.statusCode).toBe(201);
    expect(
      new Set([first, otherId, otherSource].map((r) => r.json<{ eventId: string }>().eventId)).size,
    ).toBe(3);
  });

  it('refuses a binary-mode event without ce-type, naming the header', async () => {
    const { 'ce-type': _omitted, ...headers } = ce;
    const res = await inject({
      method: 'POST',
      url: '/v1/gateway/cloudevents',
      headers: { ...headers, 'content-type': 'application/json' },
      payload: { a: 'b' },
    });
    expect(expectError(res, 400, 'validation_failed')).toContain('ce-type');
  });

  it('refuses a structured-mode event missing id and source', async () => {
    const res = await inject({
      method: 'POST',
      url: '/v1/gateway/cloudevents',
      headers: { 'content-type': 'application/cloudevents+json' },
      payload: JSON.stringify({ specversion: '1.0', type: 'a.b' }),
    });
    const message = expectError(res, 400, 'validation_failed');
    expect(message).toContain('"id"');
    expect(message).toContain('"source"');
  });

  it('refuses a type that is not an Ion event type, and an unknown specversion', async () => {
    const bad = await inject({
      method: 'POST',
      url: '/v1/gateway/cloudevents',
      headers: { ...ce, 'ce-type': 'com example/created', 'content-type': 'application/json' },
      payload: {},
    });
    expect(expectError(bad, 400, 'validation_failed')).toContain('com example/created');
    const old = await inject({
      method: 'POST',
      url: '/v1/gateway/cloudevents',
      headers: { ...ce, 'ce-specversion': '0.3', 'content-type': 'application/json' },
      payload: {},
    });
    expect(expectError(old, 400, 'validation_failed')).toContain('0.3');
  });

  it('refuses batched mode with 415 and a CloudEvent sent to a typed gateway route with 400', async () => {
    expectError(
      await inject({
        method: 'POST',
        url: '/v1/gateway/cloudevents',
        headers: { 'content-type': 'application/cloudevents-batch+json' },
        payload: '[]',
      }),
      415,
      'unsupported_media_type',
    );
    expect(
      expectError(
        await inject({
          method: 'POST',
          url: '/v1/gateway/order.placed',
          headers: { ...ce, 'content-type': 'application/json' },
          payload: {},
        }),
        400,
        'validation_failed',
      ),
    ).toContain('/v1/gateway/cloudevents');
  });
});
