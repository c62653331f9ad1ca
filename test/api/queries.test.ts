import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { IonApp } from '../../src/app/ion-app.js';
import { createLogger } from '../../src/app/logger.js';
import { loadConfig } from '../../src/config/config.js';
import { contentTypeFor, parseRange } from '../../src/api/routes/blobs.js';
import { runChild } from '../support/api-app.js';

type Injected = LightMyRequestResponse;

let dir: string;
let app: IonApp;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ion-queries-'));
  const config = loadConfig({ flags: { dataDir: dir, api: { port: 0 } } });
  app = await IonApp.create(
    config,
    createLogger('silent'),
    { api: true, relay: false, workers: false },
    {},
  );
  await app.start();
});

afterEach(async () => {
  await app.stop();
  await rm(dir, { recursive: true, force: true });
});

function inject(opts: InjectOptions): Promise<Injected> {
  return app.server!.inject(opts);
}

function expectError(res: Injected, status: number, code: string): void {
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers['content-type']).toContain('application/json');
  const body = res.json<{ error: { code: string; message: string } }>();
  expect(Object.keys(body)).toEqual(['error']);
  expect(body.error.code).toBe(code);
  expect(body.error.message.length).toBeGreaterThan(0);
}

async function uploadBlob(bytes: Buffer): Promise<{ sha256: string; size: number }> {
  const res = await inject({
    method: 'PUT',
    url: '/v1/blobs',
    payload: bytes,
    headers: { 'content-type': 'application/octet-stream' },
  });
  expect(res.statusCode, res.body).toBe(201);
  return res.json();
}

async function publish(type: string, files: { path: string; sha256: string }[] = []) {
  const res = await inject({ method: 'POST', url: '/v1/events', payload: { type, files } });
  expect(res.statusCode, res.body).toBe(201);
  return (await app.backends.store.getEvent(res.json<{ eventId: string }>().eventId))!;
}

const tick = () => new Promise((r) => setTimeout(r, 3));

describe('GET /v1/events', () => {
  it('pages through every event exactly once, newest first', async () => {
    const published: string[] = [];
    for (let i = 0; i < 7; i++) published.push((await publish('file.uploaded')).eventId);
    const seen: string[] = [];
    const createdAt: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res = await inject({
        method: 'GET',
        url: `/v1/events?limit=3${cursor === null ? '' : `&cursor=${cursor}`}`,
      });
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json<{
        events: { eventId: string; createdAt: string }[];
        nextCursor: string | null;
      }>();
      seen.push(...body.events.map((e) => e.eventId));
      createdAt.push(...body.events.map((e) => e.createdAt));
      cursor = body.nextCursor;
      pages++;
    } while (cursor !== null);
    expect(pages).toBe(3);
    expect(seen).toHaveLength(7);
    expect(new Set(seen)).toEqual(new Set(published));
    // Newest first (ids break timestamp ties, so equal times may come in any id order).
    expect(createdAt).toEqual([...createdAt].sort().reverse());
  });

  it('filters by type, source, correlation id and time range', async () => {
    const root = await publish('file.uploaded');
    await tick();
    const child = await runChild(app.backends.store, root, 'split');
    await publish('other.thing');
    const ids = async (qs: string) =>
      (await inject({ method: 'GET', url: `/v1/events?${qs}` }))
        .json<{ events: { eventId: string }[] }>()
        .events.map((e) => e.eventId);
    expect(await ids('type=file.uploaded')).toEqual([root.eventId]);
    expect(await ids('source=split')).toEqual([child.eventId]);
    expect(await ids(`correlationId=${root.correlationId}`)).toEqual([child.eventId, root.eventId]);
    expect(await ids(`correlationId=${root.correlationId}&since=${child.createdAt}`)).toEqual([
      child.eventId,
    ]);
    expect(await ids(`correlationId=${root.correlationId}&until=${child.createdAt}`)).toEqual([
      root.eventId,
    ]);
    const page = await inject({ method: 'GET', url: '/v1/events?type=file.uploaded' });
    expect(page.json<{ events: { data: unknown; metadata: unknown }[] }>().events[0]).toMatchObject(
      { data: {}, metadata: [] },
    );
  });

  it('refuses a bad cursor, a bad time and an unknown parameter with 400', async () => {
    expectError(
      await inject({ method: 'GET', url: '/v1/events?cursor=nope!' }),
      400,
      'validation_failed',
    );
    expectError(
      await inject({
        method: 'GET',
        url: `/v1/events?cursor=${Buffer.from('{}').toString('base64url')}`,
      }),
      400,
      'validation_failed',
    );
    expectError(
      await inject({ method: 'GET', url: '/v1/events?since=yesterday' }),
      400,
      'validation_failed',
    );
    expectError(
      await inject({ method: 'GET', url: '/v1/events?limit=0' }),
      400,
      'validation_failed',
    );
    expectError(
      await inject({ method: 'GET', url: '/v1/events?colour=red' }),
      400,
      'validation_failed',
    );
  });
});

describe('GET /v1/events/:eventId/lineage', () => {
  it('gives a grandchild its ancestry and a root its descendants', async () => {
    const root = await publish('file.uploaded');
    const child = await runChild(app.backends.store, root, 'split');
    const grandchild = await runChild(app.backends.store, child, 'merge', [], 'merged');
    const sibling = await runChild(app.backends.store, root, 'other');
    const unrelated = await publish('file.uploaded');

    const res = await inject({ method: 'GET', url: `/v1/events/${grandchild.eventId}/lineage` });
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json<{
      event: { eventId: string };
      ancestors: { eventId: string }[];
      descendants: { eventId: string }[];
    }>();
    expect(body.event.eventId).toBe(grandchild.eventId);
    expect(body.ancestors.map((e) => e.eventId)).toEqual([root.eventId, child.eventId]);
    expect(body.descendants).toEqual([]);

    const fromRoot = (
      await inject({ method: 'GET', url: `/v1/events/${root.eventId}/lineage` })
    ).json<{ ancestors: unknown[]; descendants: { eventId: string }[] }>();
    expect(fromRoot.ancestors).toEqual([]);
    expect(fromRoot.descendants.map((e) => e.eventId).sort()).toEqual(
      [child.eventId, grandchild.eventId, sibling.eventId].sort(),
    );
    expect(fromRoot.descendants.map((e) => e.eventId)).not.toContain(unrelated.eventId);

    expectError(await inject({ method: 'GET', url: '/v1/events/nope/lineage' }), 404, 'not_found');
  });
});

describe('GET /v1/insights', () => {
  it('matches by value, prefix and time, naming the event, its correlation id and files', async () => {
    const blob = await uploadBlob(Buffer.from('hello'));
    const root = await publish('file.uploaded', [{ path: 'docs/report.pdf', sha256: blob.sha256 }]);
    await runChild(app.backends.store, root, 'lang', [
      { key: 'lang', value: 'en-GB' },
      { key: 'lang', value: 'en_US' },
      { key: 'pages', value: '3' },
    ]);
    const other = await publish('file.uploaded');
    await runChild(app.backends.store, other, 'lang', [{ key: 'lang', value: 'fr' }]);

    type Hit = {
      value: string;
      correlationId: string;
      eventId: string;
      event: { eventId: string; type: string; files: { path: string; href: string }[] };
    };
    const hits = async (qs: string) => {
      const res = await inject({ method: 'GET', url: `/v1/insights?${qs}` });
      expect(res.statusCode, res.body).toBe(200);
      return res.json<{ insights: Hit[] }>().insights;
    };
    const eq = await hits('key=lang&value=en-GB');
    expect(eq).toHaveLength(1);
    expect(eq[0]).toMatchObject({
      module: 'lang',
      eventId: root.eventId,
      correlationId: root.correlationId,
      event: { eventId: root.eventId, type: 'file.uploaded' },
    });
    expect(eq[0]!.event.files).toEqual([
      {
        path: 'docs/report.pdf',
        sha256: blob.sha256,
        size: 5,
        href: `/v1/blobs/${blob.sha256}?name=report.pdf`,
      },
    ]);
    expect((await hits('key=lang&valuePrefix=en')).map((h) => h.value)).toEqual(['en-GB', 'en_US']);
    expect((await hits('key=lang&valuePrefix=en_')).map((h) => h.value)).toEqual(['en_US']);
    expect((await hits('module=lang&key=pages')).map((h) => h.value)).toEqual(['3']);
    const future = new Date(Date.now() + 60_000).toISOString();
    expect(await hits(`key=lang&since=${future}`)).toEqual([]);
    expect(await hits(`key=lang&until=${future}`)).toHaveLength(3);
    expectError(
      await inject({ method: 'GET', url: '/v1/insights?until=soon' }),
      400,
      'validation_failed',
    );
  });
});

describe('GET /v1/insights?has=', () => {
  // One job per detected object, as examples/video's colour module records them.
  async function object(label: string, colour: string, video: string, time: string) {
    const root = await publish('object.detected');
    await runChild(app.backends.store, root, 'colour', [
      { key: 'label', value: label },
      { key: 'colour', value: colour },
      { key: 'video', value: video },
      { key: 'time', value: time },
    ]);
    return root;
  }
  type Hit = { key: string; value: string; jobId: string; eventId: string };
  const hits = async (qs: string) => {
    const res = await inject({ method: 'GET', url: `/v1/insights?${qs}` });
    expect(res.statusCode, res.body).toBe(200);
    return res.json<{ insights: Hit[] }>().insights;
  };

  it('keeps only jobs that recorded every pair, across traces, with their other insights', async () => {
    const redCar = await object('car', 'red', 'a.mp4', '1.000');
    await object('car', 'blue', 'a.mp4', '2.000');
    await object('motorcycle', 'red', 'b.mp4', '0.000');
    const redCar2 = await object('car', 'red', 'b.mp4', '3.000');
    // Both pairs exist, but on different jobs: not a red car.
    const mixed = await publish('object.detected');
    await runChild(app.backends.store, mixed, 'colour', [
      { key: 'label', value: 'car' },
      { key: 'colour', value: 'green' },
      { key: 'note', value: 'colour=red' },
    ]);

    const both = await hits('has=label%3Dcar&has=colour%3Dred');
    expect(new Set(both.map((h) => h.eventId))).toEqual(new Set([redCar.eventId, redCar2.eventId]));
    expect(
      both.filter((h) => h.eventId === redCar.eventId).map((h) => `${h.key}=${h.value}`),
    ).toEqual(['label=car', 'colour=red', 'video=a.mp4', 'time=1.000']);
    // Combined with key: one row per red car, its time.
    expect((await hits('key=time&has=label%3Dcar&has=colour%3Dred')).map((h) => h.value)).toEqual([
      '1.000',
      '3.000',
    ]);
    // One pair: any car (four jobs, counted by their label rows).
    expect(await hits('key=label&has=label%3Dcar')).toHaveLength(4);
    // The value may contain "=": split at the first one.
    expect((await hits('key=label&has=note%3Dcolour%3Dred')).map((h) => h.eventId)).toEqual([
      mixed.eventId,
    ]);
    expect(await hits('has=label%3Dcar&has=colour%3Dpurple')).toEqual([]);
    // A single has= (not an array on the wire) works too.
    expect(await hits('key=label&has=colour%3Dred')).toHaveLength(3);
  });

  it('refuses a term without key=value, and more than 10 pairs', async () => {
    expectError(
      await inject({ method: 'GET', url: '/v1/insights?has=label' }),
      400,
      'validation_failed',
    );
    expectError(
      await inject({ method: 'GET', url: '/v1/insights?has=%3Dcar' }),
      400,
      'validation_failed',
    );
    const many = Array.from({ length: 11 }, (_, i) => `has=k${i}%3Dv`).join('&');
    expectError(
      await inject({ method: 'GET', url: `/v1/insights?${many}` }),
      400,
      'validation_failed',
    );
  });
});

describe('GET /v1/blobs/:sha256', () => {
  let bytes: Buffer;
  let sha256: string;
  beforeEach(async () => {
    bytes = randomBytes(1000);
    sha256 = (await uploadBlob(bytes)).sha256;
    expect(sha256).toBe(createHash('sha256').update(bytes).digest('hex'));
  });

  const get = (url: string, range?: string) =>
    inject({ method: 'GET', url, ...(range === undefined ? {} : { headers: { range } }) });

  it('serves the whole blob with Accept-Ranges', async () => {
    const res = await get(`/v1/blobs/${sha256}`);
    expect(res.statusCode).toBe(200);
    expect(res.rawPayload.equals(bytes)).toBe(true);
    expect(res.headers['accept-ranges']).toBe('bytes');
    expect(res.headers['content-type']).toBe('application/octet-stream');
    expect(res.headers['content-length']).toBe('1000');
  });

  it('answers ranges with 206 and the matching bytes', async () => {
    for (const [range, start, end] of [
      ['bytes=10-19', 10, 19],
      ['bytes=990-', 990, 999],
      ['bytes=-100', 900, 999],
      ['bytes=950-5000', 950, 999],
      ['bytes=-5000', 0, 999],
    ] as const) {
      const res = await get(`/v1/blobs/${sha256}`, range);
      expect(res.statusCode, range).toBe(206);
      expect(res.headers['content-range']).toBe(`bytes ${start}-${end}/1000`);
      expect(res.headers['content-length']).toBe(String(end - start + 1));
      expect(res.rawPayload.equals(bytes.subarray(start, end + 1)), range).toBe(true);
    }
  });

  it('refuses an unsatisfiable range with 416 in the error format', async () => {
    for (const range of ['bytes=1000-', 'bytes=5000-6000', 'bytes=-0']) {
      const res = await get(`/v1/blobs/${sha256}`, range);
      expectError(res, 416, 'range_not_satisfiable');
      expect(res.headers['content-range']).toBe('bytes */1000');
    }
  });

  it('ignores a malformed or multi-part range (whole blob)', async () => {
    for (const range of ['bytes=5-1', 'items=1-2', 'bytes=1-2,5-6']) {
      const res = await get(`/v1/blobs/${sha256}`, range);
      expect(res.statusCode, range).toBe(200);
      expect(res.rawPayload.equals(bytes)).toBe(true);
    }
  });

  it('sets the content type from ?type= or the ?name= extension, with a disposition', async () => {
    const named = await get(`/v1/blobs/${sha256}?name=report.pdf`);
    expect(named.headers['content-type']).toBe('application/pdf');
    expect(named.headers['content-disposition']).toBe(
      `attachment; filename="report.pdf"; filename*=UTF-8''report.pdf`,
    );
    const typed = await get(`/v1/blobs/${sha256}?type=text/plain&name=x.png`);
    expect(typed.headers['content-type']).toBe('text/plain');
    const unknown = await get(`/v1/blobs/${sha256}?name=data.bin`);
    expect(unknown.headers['content-type']).toBe('application/octet-stream');
    const ranged = await get(`/v1/blobs/${sha256}?name=a.png`, 'bytes=0-3');
    expect(ranged.statusCode).toBe(206);
    expect(ranged.headers['content-type']).toBe('image/png');
    expectError(await get(`/v1/blobs/${sha256}?type=bad%0d%0aheader`), 400, 'validation_failed');
    expectError(await get(`/v1/blobs/${'0'.repeat(64)}`), 404, 'not_found');
  });

  it('maps extensions and parses ranges', () => {
    expect(contentTypeFor('A.JSON')).toBe('application/json');
    expect(contentTypeFor('x.csv')).toBe('text/csv; charset=utf-8');
    expect(contentTypeFor('photo.jpg')).toBe('image/jpeg');
    expect(contentTypeFor('index.html')).toBe('text/html; charset=utf-8');
    expect(contentTypeFor('notes.txt')).toBe('text/plain; charset=utf-8');
    expect(contentTypeFor('noext')).toBe('application/octet-stream');
    expect(parseRange('bytes=0-0', 0)).toBe('unsatisfiable');
    expect(parseRange(undefined, 10)).toBeNull();
  });
});
