import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IonApp } from '../../src/app/ion-app.js';
import { createLogger } from '../../src/app/logger.js';
import { loadConfig } from '../../src/config/config.js';

function run(command: string, args: string[]): Promise<boolean> {
  return new Promise((resolve) => {
    execFile(command, args, (err) => resolve(err === null));
  });
}

interface Answer {
  status: number;
  body: string;
  socket: Socket;
}

/** One request on `agent`; rejects when the connection breaks instead of answering. */
function send(
  agent: Agent,
  port: number,
  method: string,
  path: string,
  body?: Buffer,
  headers: Record<string, string> = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks).toString('utf8'),
          socket: req.socket!,
        }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

// The blob directory on a real full filesystem (a 1 MiB tmpfs, mounted for the test: root
// can, as in CI). An upload the disk cannot take must be answered 503 in the error format on
// a connection that stays usable, never cut off (the soak saw resets on a full blob disk).
describe('uploads while the blob disk is full', () => {
  let dir: string;
  let blobDir: string;
  let mounted = false;
  let app: IonApp | undefined;
  let port: number;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ion-blob-full-api-'));
    blobDir = join(dir, 'blobs');
    await mkdir(blobDir);
    mounted = await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', blobDir]);
    if (!mounted) return;
    const config = loadConfig({ flags: { dataDir: dir, api: { port: 0 } } });
    app = await IonApp.create(
      config,
      createLogger('silent'),
      { api: true, relay: true, workers: false },
      {},
    );
    await app.start();
    port = (app.server!.server.address() as AddressInfo).port;
    // Fill the disk: the write stops at ENOSPC.
    await writeFile(join(blobDir, 'filler'), randomBytes(4 * 1024 * 1024)).catch(() => undefined);
  });

  afterAll(async () => {
    await app?.stop();
    if (mounted) await run('umount', [blobDir]);
    await rm(dir, { recursive: true, force: true });
  });

  it('PUT /v1/blobs answers 503 unavailable, and the connection serves the next request', async (ctx) => {
    if (!mounted) ctx.skip(); // no mount here: not root, or no tmpfs
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const upload = await send(agent, port, 'PUT', '/v1/blobs', randomBytes(2 * 1024 * 1024), {
        'content-type': 'application/octet-stream',
      });
      expect(upload.status, upload.body).toBe(503);
      expect(JSON.parse(upload.body)).toMatchObject({ error: { code: 'unavailable' } });
      const next = await send(agent, port, 'GET', '/healthz');
      expect(next.status).toBe(200);
      expect(next.socket).toBe(upload.socket); // the same connection, kept alive
    } finally {
      agent.destroy();
    }
  });

  it('the multipart gateway answers 503 unavailable, and the connection serves the next request', async (ctx) => {
    if (!mounted) ctx.skip();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const boundary = 'ion-test-boundary';
      const body = Buffer.concat([
        Buffer.from(
          `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`,
        ),
        randomBytes(2 * 1024 * 1024),
        Buffer.from(`\r\n--${boundary}--\r\n`),
      ]);
      const upload = await send(agent, port, 'POST', '/v1/gateway/video.uploaded', body, {
        'content-type': `multipart/form-data; boundary=${boundary}`,
      });
      expect(upload.status, upload.body).toBe(503);
      expect(JSON.parse(upload.body)).toMatchObject({ error: { code: 'unavailable' } });
      const next = await send(agent, port, 'GET', '/healthz');
      expect(next.status).toBe(200);
      expect(next.socket).toBe(upload.socket);
    } finally {
      agent.destroy();
    }
  });
});
