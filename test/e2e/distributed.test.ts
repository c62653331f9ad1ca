import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IonClient } from '../../src/api/client.js';
import { startAzurite, startS3rver } from '../support/emulators.js';
import { waitFor } from '../support/wait.js';
import {
  AMQP_URL,
  NATS_URL,
  POSTGRES_URL,
  dropSchema,
  startCluster,
  uniqueName,
} from './distributed-harness.js';
import { ROOT, cleanup, cli, tempDir, writePipeline } from './harness.js';

// Real OS processes: one `ion server` and three `ion worker`s sharing distributed backends.
// NATS, RabbitMQ and PostgreSQL are the machine's services (started by .ci/run when down);
// S3 and Azure are the s3rver and azurite emulators, started here.

async function runExample(url: string, client: IonClient, token: string): Promise<void> {
  const opts = { apiUrl: url, env: { ION_TOKEN: token } };
  const before = new Date(Date.now() - 1000).toISOString();
  const applied = await cli(['apply', '-f', join(ROOT, 'examples/docs/ion.yaml')], opts);
  expect(applied.code, applied.stderr).toBe(0);
  const published = await cli(
    [
      'event',
      'publish',
      'document.uploaded',
      '--file',
      'examples/docs/sample/readme.txt',
      '--file',
      'notes/ion.txt=examples/docs/sample/notes/ion.txt',
      '--json',
    ],
    opts,
  );
  expect(published.code, published.stderr).toBe(0);
  const { correlationId } = JSON.parse(published.stdout) as { correlationId: string };
  const traced = await cli(['trace', correlationId, '--wait', '--timeout', '120', '--json'], opts);
  expect(traced.code, traced.stderr).toBe(0);
  // The same request without the token is refused: the cluster really runs with auth on.
  const refused = await cli(['trace', correlationId], { apiUrl: url, env: { ION_TOKEN: '' } });
  expect(refused.code).toBe(1);
  expect(refused.stderr).toContain('token');
  const trace = await client.trace(correlationId);
  const chunks = trace.events.filter((e) => e.type === 'chunk.ready');
  expect(chunks.length).toBeGreaterThan(1);
  expect(trace.jobs).toHaveLength(1 + 2 * chunks.length);
  const unfinished = trace.jobs.filter((j) => j.state !== 'succeeded' || j.attempts !== 1);
  expect(unfinished, JSON.stringify(unfinished)).toEqual([]);
  expect(new Set(trace.events.map((e) => e.eventId)).size).toBe(trace.events.length);
  // Files written by one worker are read back through the server from the shared blob store.
  const file = chunks[0]!.files[0]!;
  const stream = await client.downloadBlob(file.sha256);
  expect(Buffer.concat(await stream.toArray()).length).toBe(file.size);
  // Jobs were spread over more than one worker process.
  const workers = new Set<string>();
  for (const job of trace.jobs) workers.add((await client.getJob(job.jobId)).attempts[0]!.workerId);
  expect(workers.size).toBeGreaterThan(1);

  // Backfill: wordcount again on every chunk since the start; the new counts flow downstream.
  const replayed = await cli(
    [
      'replay',
      'start',
      'wordcount',
      '--type',
      'chunk.ready',
      '--since',
      before,
      '--wait',
      '--json',
    ],
    opts,
  );
  expect(replayed.code, replayed.stderr).toBe(0);
  const { replay } = JSON.parse(replayed.stdout) as {
    replay: { replayId: string; jobs: number; states: Record<string, number> };
  };
  expect(replay.jobs).toBe(chunks.length);
  expect(replay.states.succeeded).toBe(chunks.length);
  const after = await waitFor(
    'the replayed counts to be summarised',
    async () => {
      const t = await client.trace(correlationId);
      const summaries = t.jobs.filter((j) => j.module === 'summarise');
      return summaries.length === 2 * chunks.length &&
        summaries.every((j) => j.state === 'succeeded')
        ? t
        : undefined;
    },
    60_000,
  );
  expect(after.jobs.filter((j) => j.replayId === replay.replayId)).toHaveLength(chunks.length);
  expect(new Set(after.events.map((e) => e.eventId)).size).toBe(after.events.length);
}

/** The parent pid of a running process, from /proc. */
async function parentOf(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  // pid (comm) state ppid ...: comm may hold spaces, so read after its closing parenthesis.
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

/** Cancels a running job through the server; a worker process stops the module. */
async function cancelAcrossProcesses(url: string, client: IonClient, token: string): Promise<void> {
  const dir = await tempDir();
  try {
    const pipeline = await writePipeline(
      dir,
      `modules:
  - name: sleeper
    subscribes: [sleep.go]
    run: { command: [sh, -c, 'echo started; sleep 120'] }
    timeout: 5m
`,
    );
    const opts = { apiUrl: url, env: { ION_TOKEN: token } };
    expect((await cli(['apply', '-f', pipeline], opts)).code).toBe(0);
    const { eventId } = await client.publish({ type: 'sleep.go' });
    const running = await waitFor(
      'the sleeper to run',
      async () => {
        const [job] = await client.listJobs({ module: 'sleeper', eventId });
        return job?.state === 'running' ? job : undefined;
      },
      60_000,
    );
    const follower = cli(['job', 'logs', running.jobId, '--follow'], opts);
    expect((await client.cancelJob(running.jobId)).status).toBe('cancelling');
    const { job, attempts } = await waitFor(
      'the sleeper to be cancelled',
      async () => {
        const found = await client.getJob(running.jobId);
        return found.job.state === 'cancelled' ? found : undefined;
      },
      30_000,
    );
    expect(job.attempts).toBe(1);
    expect(attempts[0]).toMatchObject({ outcome: 'failed', errorCode: 'job_cancelled' });
    // Killed, not slept out: the attempt ended long before the module's 120 s.
    expect(attempts[0]!.durationMs ?? Infinity).toBeLessThan(60_000);
    const followed = await follower;
    expect(followed.code, followed.stderr).toBe(0);
    expect(followed.stdout).toContain('started');
  } finally {
    await cleanup(dir);
  }
}

describe('NATS JetStream + PostgreSQL + S3, one server and three workers', () => {
  const schema = uniqueName('ion_e2e_');
  let s3: Awaited<ReturnType<typeof startS3rver>>;
  let env: Record<string, string>;

  beforeAll(async () => {
    s3 = await startS3rver();
    env = {
      ION_BUS: 'nats',
      ION_NATS_SERVERS: NATS_URL,
      ION_NATS_STREAM: uniqueName('ION_E2E_'),
      ION_STORE: 'postgres',
      ION_POSTGRES_URL: POSTGRES_URL,
      ION_POSTGRES_SCHEMA: schema,
      ION_BLOB: 's3',
      ION_S3_BUCKET: uniqueName('ion-e2e-'),
      ION_S3_ENDPOINT: s3.endpoint,
      ION_S3_FORCE_PATH_STYLE: 'true',
      ION_S3_ACCESS_KEY_ID: 'S3RVER',
      ION_S3_SECRET_ACCESS_KEY: 'S3RVER',
      ION_S3_CHECKSUMS: 'when_required',
    };
  });

  afterAll(async () => {
    await s3?.stop();
    await dropSchema(schema);
  });

  it('runs the example pipeline across the workers', async () => {
    const cluster = await startCluster(env);
    try {
      await runExample(cluster.url, cluster.client, cluster.token);
      await cancelAcrossProcesses(cluster.url, cluster.client, cluster.token);
    } finally {
      await cluster.stop();
    }
  });

  it('finishes a job on another worker when its worker is killed mid-job, with nothing lost or duplicated', async () => {
    const dir = await tempDir();
    const markers = join(dir, 'markers');
    const slow = `mkdir -p "$MARKERS"; echo $PPID > "$MARKERS/$ION_EVENT_ID.$ION_ATTEMPT"; sleep 2; printf '[{"key":"eventType","value":"kill.done"}]' > out/events/done.json`;
    const pipeline = await writePipeline(
      dir,
      `modules:
  - name: kill-slow
    subscribes: [kill.go]
    publishes: [kill.done]
    run: { command: [sh, -c, ${JSON.stringify(slow)}] }
    env: { MARKERS: ${JSON.stringify(markers)} }
  - name: kill-sink
    subscribes: [kill.done]
    run: { command: ['true'] }
`,
    );
    const cluster = await startCluster(env);
    try {
      expect(
        (
          await cli(['apply', '-f', pipeline], {
            apiUrl: cluster.url,
            env: { ION_TOKEN: cluster.token },
          })
        ).code,
      ).toBe(0);
      const published = await Promise.all(
        [1, 2, 3].map(() => cluster.client.publish({ type: 'kill.go' })),
      );
      const first = await waitFor(
        'a slow job to start',
        async () => (await readdir(markers).catch(() => []))[0],
        60_000,
      );
      // The module's parent is the worker's launcher process; the worker is its parent.
      const launcher = Number((await readFile(join(markers, first), 'utf8')).trim());
      const pid = await parentOf(launcher);
      const victim = cluster.workers.find((w) => w.proc.pid === pid);
      expect(victim, `marker pid ${launcher}'s parent ${pid} is one of the workers`).toBeDefined();
      await victim!.kill();
      for (const { eventId, correlationId } of published) {
        const trace = await waitFor(
          `event ${eventId} to finish`,
          async () => {
            const t = await cluster.client.trace(correlationId);
            return t.jobs.length === 2 && t.jobs.every((j) => j.state === 'succeeded')
              ? t
              : undefined;
          },
          90_000,
        );
        expect(trace.events.map((e) => e.type).sort()).toEqual(['kill.done', 'kill.go']);
      }
      const killedEvent = first.split('.')[0]!;
      const job = (
        await cluster.client.listJobs({ eventId: killedEvent, module: 'kill-slow' })
      )[0]!;
      expect(job.attempts).toBeGreaterThanOrEqual(2);
    } finally {
      await cluster.stop();
      await cleanup(dir);
    }
  });
});

describe('RabbitMQ + PostgreSQL + Azure Blob, one server and three workers', () => {
  const schema = uniqueName('ion_e2e_');
  let azure: Awaited<ReturnType<typeof startAzurite>>;

  beforeAll(async () => {
    azure = await startAzurite();
  });

  afterAll(async () => {
    await azure?.stop();
    await dropSchema(schema);
  });

  it('runs the example pipeline across the workers', async () => {
    const cluster = await startCluster({
      ION_BUS: 'rabbitmq',
      ION_AMQP_URL: AMQP_URL,
      ION_AMQP_EXCHANGE: uniqueName('ion-e2e-'),
      ION_STORE: 'postgres',
      ION_POSTGRES_URL: POSTGRES_URL,
      ION_POSTGRES_SCHEMA: schema,
      ION_BLOB: 'azure',
      ION_AZURE_CONNECTION_STRING: azure.connectionString,
      ION_AZURE_CONTAINER: uniqueName('ion-e2e-'),
    });
    try {
      await runExample(cluster.url, cluster.client, cluster.token);
      await cancelAcrossProcesses(cluster.url, cluster.client, cluster.token);
    } finally {
      await cluster.stop();
    }
  });
});
