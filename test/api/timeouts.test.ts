import { createHash, randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildServer, type IonServer } from '../../src/api/server.js';
import { DEFAULT_SERVER_TIMEOUTS } from '../../src/api/timeouts.js';
import { createLogger } from '../../src/app/logger.js';
import { loadConfig } from '../../src/config/config.js';
import { startApiApp, type ApiApp } from '../support/api-app.js';

// Short limits, so a slow client is cut off within seconds; the assertions are about what
// the client is told and that the connection goes, never about how fast.
const TIMEOUTS = {
  headersTimeoutMs: 1000,
  requestTimeoutMs: 2000,
  idleTimeoutMs: 2000,
  keepAliveTimeoutMs: 1000,
  uploadMinBytesPerSecond: 2000,
};

let fixture: ApiApp;
let server: IonServer;
let port: number;

beforeAll(async () => {
  fixture = await startApiApp('ion-timeouts-', 64 * 1024);
  server = buildServer({
    control: fixture.app.control,
    logger: createLogger('silent'),
    timeouts: TIMEOUTS,
  });
  await server.listen({ host: '127.0.0.1', port: 0 });
  port = (server.server.address() as AddressInfo).port;
});

afterAll(async () => {
  await server.close();
  await fixture.stop();
});

/** A raw connection: what the server sent, and a promise that settles when it closed. */
function open(): { socket: Socket; received: () => string; closed: Promise<void> } {
  const socket = connect({ host: '127.0.0.1', port });
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => undefined); // a reset after the answer is expected here
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return { socket, received: () => Buffer.concat(chunks).toString('utf8'), closed };
}

/**
 * Writes `bytes` one at a time every `everyMs` until the connection closes or `maxMs` has
 * passed (the trickle stops by itself, so a server that never cuts it fails the test).
 */
async function trickle(socket: Socket, bytes: Buffer, everyMs: number, maxMs: number) {
  const stopAt = Date.now() + maxMs;
  for (const byte of bytes) {
    if (socket.destroyed || socket.writableEnded || Date.now() > stopAt) return;
    socket.write(Buffer.from([byte]));
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

function errorOf(response: string): { status: number; code: string; message: string } {
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(response)?.[1]);
  const body = response.slice(response.indexOf('\r\n\r\n') + 4);
  const parsed = JSON.parse(body) as { error: { code: string; message: string } };
  return { status, ...parsed.error };
}

describe('server timeouts', () => {
  it('has the defaults of the config schema', () => {
    const { api } = loadConfig({ flags: {} });
    expect({
      headersTimeoutMs: api.headersTimeoutMs,
      requestTimeoutMs: api.requestTimeoutMs,
      idleTimeoutMs: api.idleTimeoutMs,
      keepAliveTimeoutMs: api.keepAliveTimeoutMs,
      uploadMinBytesPerSecond: api.uploadMinBytesPerSecond,
    }).toEqual(DEFAULT_SERVER_TIMEOUTS);
  });

  it('cuts off a client that trickles its headers, with 408 and the error format', async () => {
    const conn = open();
    const headers = Buffer.from(
      'GET /v1/modules HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ' + 'a'.repeat(2000) + '\r\n\r\n',
    );
    await trickle(conn.socket, headers, 50, 30_000);
    await conn.closed;
    const error = errorOf(conn.received());
    expect(error).toMatchObject({ status: 408, code: 'timeout' });
    expect(error.message).toContain('api.headersTimeoutMs');
  });

  it('cuts off a request whose body trickles in, though bytes keep arriving', async () => {
    const conn = open();
    const body = Buffer.from(JSON.stringify({ type: 'slow.body', data: { x: 'y'.repeat(500) } }));
    conn.socket.write(
      `POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    // One byte every 200 ms: never idle long enough for the idle timeout.
    await trickle(conn.socket, body, 200, 30_000);
    await conn.closed;
    const error = errorOf(conn.received());
    expect(error).toMatchObject({ status: 408, code: 'timeout' });
    expect(error.message).toContain('api.requestTimeoutMs');
    const listed = await fixture.app.control.listEvents({ type: 'slow.body' });
    expect(listed.events).toEqual([]);
  });

  it('cuts off an upload that trickles below the minimum rate', async () => {
    const conn = open();
    conn.socket.write(
      'PUT /v1/blobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000000\r\n\r\n',
    );
    await trickle(conn.socket, randomBytes(1000), 100, 30_000);
    await conn.closed;
    const error = errorOf(conn.received());
    expect(error).toMatchObject({ status: 408, code: 'timeout' });
    expect(error.message).toContain('api.uploadMinBytesPerSecond');
  });

  it('completes an upload that takes longer than the request deadline but keeps moving', async () => {
    const chunks = Array.from({ length: 40 }, () => randomBytes(64 * 1024));
    const whole = Buffer.concat(chunks);
    const conn = open();
    conn.socket.write(
      `PUT /v1/blobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: ${whole.length}\r\nConnection: close\r\n\r\n`,
    );
    // 40 chunks 100 ms apart: at least 4 s, twice the 2 s request deadline.
    const started = Date.now();
    for (const chunk of chunks) {
      conn.socket.write(chunk);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await conn.closed;
    expect(Date.now() - started).toBeGreaterThan(TIMEOUTS.requestTimeoutMs);
    const response = conn.received();
    expect(response).toMatch(/^HTTP\/1\.1 201 /);
    const ref = JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4)) as {
      sha256: string;
      size: number;
    };
    expect(ref).toEqual({
      sha256: createHash('sha256').update(whole).digest('hex'),
      size: whole.length,
    });
  });

  it('closes a kept-alive connection that holds on without a new request', async () => {
    const conn = open();
    conn.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await conn.closed; // the keep-alive timeout ends it; the test timeout catches a hang
    expect(conn.received()).toMatch(/^HTTP\/1\.1 200 /);
    expect(conn.received()).toContain('"status":"ok"');
  });
});
