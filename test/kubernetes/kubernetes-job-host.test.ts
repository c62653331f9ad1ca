import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { promisify } from 'node:util';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBackends } from '../../src/app/backends.js';
import { IonApp } from '../../src/app/ion-app.js';
import { loadConfig } from '../../src/config/config.js';
import { jobIdFor } from '../../src/core/ids.js';
import { JobHosts } from '../../src/executors/job-hosts.js';
import { KubernetesJobHost } from '../../src/executors/kubernetes/kubernetes-job-host.js';
import { ENGINE_SETUP_TIMEOUT_MS, podmanEngine } from '../support/container-engine.js';
import { S3RVER_CREDENTIALS, startS3rver, type RunningS3rver } from '../support/emulators.js';
import { waitFor } from '../support/wait.js';
import { PodmanCluster } from './podman-cluster.js';

/**
 * The Kubernetes job host run for real, without a Kubernetes API server: the Job it builds is
 * run as a pod by `podman kube play` (PodmanCluster), with the real `ion/ion:local` image
 * running `ion handler prepare|collect` against a real S3 server (s3rver), the module in
 * `ion/runtime:local`, and a real Ion worker (SQLite store and bus) committing the result.
 * What this cannot show (scheduling, the API's watch and log streams) is listed in
 * docs/executors.md#the-kubernetes-executor.
 */

const exec = promisify(execFile);

/** podman's CLI environment, with Ion's images in its storage (test/support/container-engine.ts). */
async function podmanEnv(): Promise<NodeJS.ProcessEnv> {
  const engine = await podmanEngine();
  return { ...process.env, ...engine.cliEnv };
}

let s3rver: Promise<RunningS3rver>;
let cluster: PodmanCluster;
let app: IonApp;
let dataDir: string;
const secret = `ion-blob-${randomBytes(4).toString('hex')}`;

beforeAll(async () => {
  s3rver = startS3rver();
  const { endpoint } = await s3rver;
  const env = await podmanEnv();
  for (const image of ['ion/ion:local', 'ion/runtime:local']) {
    await exec('podman', ['image', 'exists', image], { env }).catch(() => {
      throw new Error(`podman has no image ${image}: run npm run images`);
    });
  }
  cluster = new PodmanCluster({ env, network: 'host' });
  // The Secret the config names holds the credentials; the worker's own config has none.
  await cluster.createSecret(secret, {
    ION_S3_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId,
    ION_S3_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey,
  });
  dataDir = await mkdtemp(join(tmpdir(), 'ion-k8s-'));
  const config = loadConfig({
    env: {},
    flags: {
      dataDir,
      logLevel: 'silent',
      dispatcher: { retryBaseDelayMs: 50, retryMaxDelayMs: 100 },
      blob: {
        kind: 's3',
        bucket: `ion-k8s-${randomBytes(4).toString('hex')}`,
        endpoint,
        forcePathStyle: true,
        checksums: 'when_required',
        accessKeyId: S3RVER_CREDENTIALS.accessKeyId,
        secretAccessKey: S3RVER_CREDENTIALS.secretAccessKey,
      },
      executor: {
        kind: 'kubernetes',
        kubernetes: {
          handlerImage: 'localhost/ion/ion:local',
          runtimeImage: 'localhost/ion/runtime:local',
          blobSecret: secret,
          pendingTimeoutMs: 30_000,
        },
      },
    },
  });
  const logger = pino({ level: 'silent' });
  const backends = await createBackends(config, logger);
  const host = new KubernetesJobHost({
    cluster,
    settings: config.executor.kubernetes,
    blob: config.blob,
    blobs: backends.blobs,
    logger,
  });
  app = new IonApp(
    config,
    logger,
    { api: false, relay: true, workers: true },
    {},
    {
      ...backends,
      jobHosts: new JobHosts('kubernetes', { kubernetes: () => host }),
    },
  );
  await app.start();
}, ENGINE_SETUP_TIMEOUT_MS);

afterAll(async () => {
  await app?.stop();
  await cluster?.close();
  await s3rver.then(
    (s) => s.stop(),
    () => undefined,
  );
  if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
});

const settled = async (jobId: string, states: string[]) =>
  waitFor(
    `job ${jobId} to reach ${states.join(' or ')}`,
    async () => {
      const { job, attempts } = await app.control
        .getJob(jobId)
        .catch(() => ({ job: null, attempts: [] }));
      return job !== null && states.includes(job.state) ? { job, attempts } : undefined;
    },
    120_000,
    200,
  );

async function logOf(jobId: string): Promise<string> {
  const { stream } = await app.control.jobLog(jobId);
  return stream === null ? '' : text(stream);
}

describe('KubernetesJobHost on podman kube play (the generated pod run for real)', () => {
  it('prepares from S3 in the pod, runs the module, collects, and the worker commits its outputs and child event', async () => {
    await app.control.applyPipeline({
      modules: [
        {
          name: 'upper',
          subscribes: ['k8s.text'],
          publishes: ['k8s.upper'],
          executor: 'kubernetes',
          run: {
            command: [
              'sh',
              '-c',
              `set -e
               tr a-z A-Z < in/data/doc/in.txt > out/data/upper.txt
               printf '[{"key":"chars","value":"%s"}]' "$(wc -c < in/data/doc/in.txt | tr -d ' ')" > out/insights.json
               printf '[{"key":"eventType","value":"k8s.upper"},{"key":"files","value":"upper.txt"}]' > out/events/next.json
               echo "module saw $ION_EVENT_TYPE in $PWD; blob secret visible: \${ION_S3_SECRET_ACCESS_KEY:-no}"`,
            ],
          },
          retries: 0,
          timeout: '60s',
        },
      ],
    });
    const input = await app.backends.blobs.put(Readable.from([Buffer.from('hello kube\n')]));
    const { event } = await app.control.publish({
      type: 'k8s.text',
      files: [{ path: 'doc/in.txt', sha256: input.sha256 }],
    });
    const jobId = jobIdFor('upper', event.eventId);
    const { job, attempts } = await settled(jobId, ['succeeded', 'failed', 'dead_lettered']);
    expect(attempts.at(-1)?.error ?? null).toBeNull();
    expect(job.state).toBe('succeeded');
    const log = await logOf(jobId);
    expect(log).toContain('module saw k8s.text in /ion; blob secret visible: no');
    const trace = await app.control.trace(event.correlationId);
    const child = trace.events.find((e) => e.type === 'k8s.upper');
    expect(child?.files.map((f) => f.path)).toEqual(['upper.txt']);
    expect(await text(await app.backends.blobs.get(child!.files[0]!.sha256))).toBe('HELLO KUBE\n');
    // The pod is gone once its outcome was read.
    const { stdout } = await exec('podman', ['pod', 'ps', '--format', '{{.Name}}'], {
      env: await podmanEnv(),
    });
    expect(stdout).not.toContain(`ion-${jobId}`);
  });

  it("records a failing module's exit status and log though collect never runs", async () => {
    await app.control.applyPipeline({
      modules: [
        {
          name: 'broken',
          subscribes: ['k8s.bad'],
          publishes: [],
          executor: 'kubernetes',
          run: {
            command: [
              'sh',
              '-c',
              'echo "about to fail on $(cat in/data/x.txt)"; echo oops >&2; exit 3',
            ],
          },
          retries: 0,
          timeout: '60s',
        },
      ],
    });
    const input = await app.backends.blobs.put(Readable.from([Buffer.from('input-x')]));
    const { event } = await app.control.publish({
      type: 'k8s.bad',
      files: [{ path: 'x.txt', sha256: input.sha256 }],
    });
    const jobId = jobIdFor('broken', event.eventId);
    const { job, attempts } = await settled(jobId, ['dead_lettered']);
    expect(job.state).toBe('dead_lettered');
    expect(attempts.at(-1)).toMatchObject({ exitCode: 3, errorCode: 'module_failed' });
    expect(attempts.at(-1)?.logTail).toContain('about to fail on input-x');
    const log = await logOf(jobId);
    expect(log).toContain('about to fail on input-x');
    expect(log).toContain('oops');
  });

  it('stops a module past its timeout: module_timeout, the log so far kept, the pod deleted', async () => {
    await app.control.applyPipeline({
      modules: [
        {
          name: 'sleepy',
          subscribes: ['k8s.slow'],
          publishes: [],
          executor: 'kubernetes',
          run: { command: ['sh', '-c', 'echo begun; sleep 600'] },
          retries: 0,
          timeout: '3s',
        },
      ],
    });
    const { event } = await app.control.publish({ type: 'k8s.slow' });
    const jobId = jobIdFor('sleepy', event.eventId);
    const { job, attempts } = await settled(jobId, ['succeeded', 'dead_lettered']);
    expect(job.state).toBe('dead_lettered');
    expect(attempts.at(-1)).toMatchObject({ errorCode: 'module_timeout' });
    expect(await logOf(jobId)).toContain('begun');
    const { stdout } = await exec('podman', ['pod', 'ps', '--format', '{{.Name}}'], {
      env: await podmanEnv(),
    });
    expect(stdout).not.toContain(`ion-${jobId}`);
  });

  it("refuses a module's bad output in collect, as the module's fault (module_output_invalid)", async () => {
    await app.control.applyPipeline({
      modules: [
        {
          name: 'liar',
          subscribes: ['k8s.lie'],
          publishes: ['k8s.told'],
          executor: 'kubernetes',
          run: {
            command: [
              'sh',
              '-c',
              `printf '[{"key":"eventType","value":"k8s.told"},{"key":"files","value":"nope.txt"}]' > out/events/e.json`,
            ],
          },
          retries: 0,
          timeout: '60s',
        },
      ],
    });
    const { event } = await app.control.publish({ type: 'k8s.lie' });
    const jobId = jobIdFor('liar', event.eventId);
    const { job, attempts } = await settled(jobId, ['succeeded', 'dead_lettered']);
    expect(job.state).toBe('dead_lettered');
    expect(attempts.at(-1)).toMatchObject({ exitCode: 0, errorCode: 'module_output_invalid' });
    expect(attempts.at(-1)?.error).toContain('nope.txt');
    const trace = await app.control.trace(event.correlationId);
    expect(trace.events.map((e) => e.type)).toEqual(['k8s.lie']);
  });
});
