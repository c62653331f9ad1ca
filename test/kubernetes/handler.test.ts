import { randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AzureBlobStore } from '../../src/blob/azure/azure-blob-store.js';
import type { BlobStore } from '../../src/blob/blob-store.js';
import { S3BlobStore } from '../../src/blob/s3/s3-blob-store.js';
import { runHandlerStep, type HandlerStep } from '../../src/cli/commands/handler.js';
import type { IonEvent } from '../../src/core/types.js';
import { parseResult } from '../../src/executors/kubernetes/handler-protocol.js';
import type { CollectedOutputs } from '../../src/handler/collect.js';
import {
  S3RVER_CREDENTIALS,
  startAzurite,
  startS3rver,
  type RunningAzurite,
  type RunningS3rver,
} from '../support/emulators.js';

/**
 * `ion handler prepare|collect` against real blob stores (s3rver, Azurite), called in
 * process as the command's action calls it. The pod tests (kubernetes-job-host.test.ts) run
 * the same commands as the real binary inside containers.
 */

let s3rver: Promise<RunningS3rver>;
let azurite: Promise<RunningAzurite>;
let dirs: string[] = [];

beforeAll(async () => {
  s3rver = startS3rver();
  azurite = startAzurite();
  await Promise.allSettled([s3rver, azurite]);
});

afterAll(async () => {
  await s3rver.then(
    (s) => s.stop(),
    () => undefined,
  );
  await azurite.then(
    (a) => a.stop(),
    () => undefined,
  );
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  dirs = [];
});

interface Target {
  blobs: BlobStore;
  env: Record<string, string>;
}

async function s3Target(): Promise<Target> {
  const { endpoint } = await s3rver;
  const bucket = `ion-handler-${randomBytes(5).toString('hex')}`;
  const blobs = new S3BlobStore({
    bucket,
    prefix: 'p/',
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    credentials: S3RVER_CREDENTIALS,
    checksums: 'when_required',
  });
  await blobs.start();
  return {
    blobs,
    env: {
      ION_BLOB: 's3',
      ION_S3_BUCKET: bucket,
      ION_S3_PREFIX: 'p/',
      ION_S3_ENDPOINT: endpoint,
      ION_S3_FORCE_PATH_STYLE: 'true',
      ION_S3_CHECKSUMS: 'when_required',
      ION_S3_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
      ION_S3_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
    },
  };
}

async function azureTarget(): Promise<Target> {
  const { connectionString } = await azurite;
  const container = `ion-handler-${randomBytes(5).toString('hex')}`;
  const blobs = new AzureBlobStore({ connectionString, container, prefix: 'x/' });
  await blobs.start();
  return {
    blobs,
    env: {
      ION_BLOB: 'azure',
      ION_AZURE_CONNECTION_STRING: connectionString,
      ION_AZURE_CONTAINER: container,
      ION_AZURE_PREFIX: 'x/',
    },
  };
}

async function run(
  step: HandlerStep,
  dir: string,
  env: Record<string, string>,
  terminationLog?: string,
): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runHandlerStep(
    step,
    { dir, ...(terminationLog === undefined ? {} : { terminationLog }) },
    env,
    { out: (t) => (out += t), err: (t) => (err += t) },
  );
  return { code, out, err };
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ion-handler-'));
  dirs.push(dir);
  return dir;
}

function eventWith(files: IonEvent['files']): IonEvent {
  return {
    eventId: 'ev-h1',
    type: 'doc.uploaded',
    correlationId: 'c1',
    parentEventId: null,
    source: 'api',
    sourceJobId: null,
    data: [{ key: 'lang', value: 'en' }],
    files,
    createdAt: new Date().toISOString(),
  };
}

describe.each([
  ['S3 (s3rver)', s3Target],
  ['Azure Blob (Azurite)', azureTarget],
])('ion handler prepare and collect on %s', (_name, target) => {
  it('prepare downloads the inputs, collect stores the outputs and reports their description', async () => {
    const { blobs, env } = await target();
    const input = await blobs.put(Readable.from([Buffer.from('hello pod')]));
    const dir = await tempDir();
    const job = { jobId: 'j1', attempt: 1, module: 'split' };
    const prep = await run('prepare', dir, {
      ...env,
      ION_JOB: JSON.stringify({
        ...job,
        event: eventWith([{ path: 'sub/in.txt', sha256: input.sha256, size: input.size }]),
      }),
    });
    expect(prep.err).not.toContain('error:');
    expect(prep.code).toBe(0);
    expect(await readFile(join(dir, 'in/data/sub/in.txt'), 'utf8')).toBe('hello pod');
    expect(JSON.parse(await readFile(join(dir, 'in/eventmeta.json'), 'utf8'))).toEqual([
      { key: 'lang', value: 'en' },
    ]);
    expect(parseResult(undefined, prep.out)).toEqual({ ok: true, inputs: 1 });

    // What a module would leave behind.
    await writeFile(join(dir, 'out/data/result.txt'), 'HELLO POD');
    await writeFile(join(dir, 'out/insights.json'), '[{"key":"words","value":"2"}]');
    await writeFile(
      join(dir, 'out/events/next.json'),
      '[{"key":"eventType","value":"doc.split"},{"key":"files","value":"result.txt"}]',
    );
    const terminationLog = join(dir, 'termination-log');
    await writeFile(terminationLog, '');
    const coll = await run(
      'collect',
      dir,
      { ...env, ION_JOB: JSON.stringify({ ...job, publishes: ['doc.split'] }) },
      terminationLog,
    );
    expect(coll.code).toBe(0);
    const result = parseResult(await readFile(terminationLog, 'utf8'), '');
    expect(result).toEqual(parseResult(undefined, coll.out));
    expect(result?.ok).toBe(true);
    const sha = (result as { collected: string }).collected;
    const collected = JSON.parse(await text(await blobs.get(sha))) as CollectedOutputs;
    expect(collected.insights).toEqual([{ key: 'words', value: '2' }]);
    expect(collected.events).toEqual([
      expect.objectContaining({ fileName: 'next.json', type: 'doc.split' }),
    ]);
    const [output] = collected.outputs;
    expect(output?.path).toBe('result.txt');
    expect(await text(await blobs.get(output!.sha256))).toBe('HELLO POD');
    await blobs.close();
  });
});

describe('ion handler (errors)', () => {
  it("collect reports bad output as the module's fault, with the file and the problem", async () => {
    const { blobs, env } = await s3Target();
    const dir = await tempDir();
    await mkdir(join(dir, 'out/events'), { recursive: true });
    await mkdir(join(dir, 'out/data'), { recursive: true });
    await writeFile(join(dir, 'out/events/e.json'), '[{"key":"eventType","value":"not.declared"}]');
    const coll = await run('collect', dir, {
      ...env,
      ION_JOB: JSON.stringify({ jobId: 'j', attempt: 1, module: 'm', publishes: ['ok'] }),
    });
    expect(coll.code).toBe(1);
    const result = parseResult(undefined, coll.out);
    expect(result).toMatchObject({ ok: false, error: { code: 'module_output_invalid' } });
    expect(coll.err).toMatch(/error: .*not\.declared/);
    await blobs.close();
  });

  it('prepare says which input is missing from the blob store', async () => {
    const { blobs, env } = await s3Target();
    const dir = await tempDir();
    const missing = 'b'.repeat(64);
    const prep = await run('prepare', dir, {
      ...env,
      ION_JOB: JSON.stringify({
        jobId: 'j',
        attempt: 1,
        module: 'm',
        event: eventWith([{ path: 'x.bin', sha256: missing, size: 1 }]),
      }),
    });
    expect(prep.code).toBe(1);
    expect(parseResult(undefined, prep.out)).toMatchObject({
      ok: false,
      error: { code: 'not_found' },
    });
    expect(prep.err).toContain(missing);
    await blobs.close();
  });

  it('refuses to run without a job description, saying where to give it', async () => {
    const dir = await tempDir();
    const prep = await run('prepare', dir, {});
    expect(prep.code).toBe(1);
    expect(prep.err).toContain(
      'ION_JOB is not set: give the job description in it or with --job-file',
    );
    const broken = await run('collect', dir, { ION_JOB: '{"jobId":"j"' });
    expect(broken.code).toBe(1);
    expect(broken.err).toMatch(/ION_JOB is not valid JSON/);
  });

  it('creates no termination log where there is none', async () => {
    const dir = await tempDir();
    const where = join(dir, 'no-such-termination-log');
    await run('prepare', dir, {}, where);
    await expect(readFile(where)).rejects.toThrow(/ENOENT/);
  });
});
