import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { connect as natsConnect } from 'nats';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { IonClient } from '../../src/api/client.js';
import { startS3rver, type RunningS3rver } from '../support/emulators.js';
import { startNatsServer, type PrivateNatsServer } from '../support/nats-server.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';
import { waitFor } from '../support/wait.js';
import {
  NATS_URL,
  POSTGRES_URL,
  dropSchema,
  startProcess,
  uniqueName,
  type Proc,
} from './distributed-harness.js';
import { cleanup, cli, tempDir, writePipeline } from './harness.js';

// Backend outages in the middle of a run, with real OS processes: one `ion server` and three
// `ion worker`s. The broker (a private NATS server) is restarted, or PostgreSQL is cut off
// behind a TCP proxy, while jobs run and others wait; afterwards every job must have
// succeeded, every event must exist exactly once, and every process must still be running.

const ROOTS = 5;
const FAN_OUT = 5;
/** Per root: the root, FAN_OUT res.item, FAN_OUT res.done. */
const EVENTS_PER_ROOT = 1 + 2 * FAN_OUT;
/** Per root: one res-fan job, FAN_OUT res-slow jobs, FAN_OUT res-sink jobs. */
const JOBS_PER_ROOT = 1 + 2 * FAN_OUT;
const SLOW_JOBS = ROOTS * FAN_OUT;

/**
 * res.root → res-fan (raises FAN_OUT res.item) → res-slow (≈0.8 s each, concurrency 2 per
 * worker, leaves a marker file per attempt, raises res.done) → res-sink. The sink makes the
 * events committed during an outage count: their notices must still reach the bus.
 */
async function writeResiliencePipeline(dir: string, markers: string): Promise<string> {
  const fan = `for i in $(seq 1 ${FAN_OUT}); do printf '[{"key":"eventType","value":"res.item"},{"key":"n","value":"%s"}]' "$i" > "out/events/item-$i.json"; done`;
  const slow = `mkdir -p "$MARKERS" && touch "$MARKERS/$ION_EVENT_ID.$ION_ATTEMPT" && sleep 0.8 && printf '[{"key":"eventType","value":"res.done"}]' > out/events/done.json`;
  return writePipeline(
    dir,
    `modules:
  - name: res-fan
    subscribes: [res.root]
    publishes: [res.item]
    run: { command: [sh, -c, ${JSON.stringify(fan)}] }
  - name: res-slow
    subscribes: [res.item]
    publishes: [res.done]
    concurrency: 2
    run: { command: [sh, -c, ${JSON.stringify(slow)}] }
    env: { MARKERS: ${JSON.stringify(markers)} }
  - name: res-sink
    subscribes: [res.done]
    run: { command: ['true'] }
`,
  );
}

/** `<eventId>.<attempt>` of every res-slow attempt started so far. */
async function markerFiles(markers: string): Promise<string[]> {
  return readdir(markers).catch(() => []);
}

/** Rows of `schema`.`table` matching `where`, read directly (never through the proxy). */
async function countRows(schema: string, table: string, where = 'true'): Promise<number> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    const { rows } = await client.query<{ n: string }>(
      `SELECT count(*) AS n FROM ${schema}.${table} WHERE ${where}`,
    );
    return Number(rows[0]!.n);
  } finally {
    await client.end();
  }
}

interface Cluster {
  url: string;
  client: IonClient;
  procs: Proc[];
  stop(): Promise<void>;
}

/**
 * One `ion server` (it applies the migrations), then three `ion worker`s started at once to
 * keep the file fast. On a failed test, every process's output is printed.
 */
async function startResilienceCluster(env: Record<string, string>): Promise<Cluster> {
  const server = await startProcess(
    ['server', '--port', '0'],
    env,
    /Ion server is up at (http:\/\/\S+)/,
  );
  const started = await Promise.allSettled(
    [1, 2, 3].map(() => startProcess(['worker'], env, /Ion worker is up/)),
  );
  const procs: Proc[] = [server];
  for (const s of started) if (s.status === 'fulfilled') procs.push(s.value);
  const stop = async (): Promise<void> => {
    await Promise.all(procs.map((p) => p.stop()));
  };
  const failed = started.find((s) => s.status === 'rejected');
  if (failed !== undefined) {
    await stop();
    throw failed.reason;
  }
  onTestFailed(() => {
    for (const p of procs) console.error(`--- output of process ${p.proc.pid}:\n${p.output()}`);
  });
  const url = server.match[1]!;
  return { url, client: new IonClient(url), procs, stop };
}

function expectAlive(procs: Proc[]): void {
  for (const p of procs) {
    expect(
      { exitCode: p.proc.exitCode, signal: p.proc.signalCode },
      `process ${p.proc.pid} is still running`,
    ).toEqual({ exitCode: null, signal: null });
  }
}

/** Publishes the roots, then waits until a few res-slow jobs run while others still wait. */
async function startWork(
  cluster: Cluster,
  pipeline: string,
  markers: string,
): Promise<{ eventId: string; correlationId: string }[]> {
  const applied = await cli(['apply', '-f', pipeline], { apiUrl: cluster.url });
  expect(applied.code, applied.stderr).toBe(0);
  const roots = await Promise.all(
    Array.from({ length: ROOTS }, () => cluster.client.publish({ type: 'res.root' })),
  );
  const started = await waitFor(
    'a few res-slow jobs to start',
    async () => {
      const m = await markerFiles(markers);
      return m.length >= 3 ? m : undefined;
    },
    60_000,
  );
  expect(started.length, 'res-slow jobs still waiting when the outage starts').toBeLessThan(
    SLOW_JOBS,
  );
  return roots;
}

/**
 * Waits for every trace to finish with all its jobs succeeded, then checks that nothing was
 * lost or duplicated, in the traces and in the store as a whole. Returns every job's attempts.
 */
async function expectAllSucceeded(
  client: IonClient,
  roots: { correlationId: string }[],
  schema: string,
  timeoutMs: number,
): Promise<number[]> {
  const attempts: number[] = [];
  for (const { correlationId } of roots) {
    const trace = await waitFor(
      `trace ${correlationId} to finish with every job succeeded`,
      async () => {
        const t = await client.trace(correlationId);
        if (t.jobs.length === JOBS_PER_ROOT && t.jobs.every((j) => j.state === 'succeeded'))
          return t;
        // Becomes the "last error" of the timeout message.
        throw new Error(
          `${t.jobs.length} jobs: ${t.jobs.map((j) => `${j.module}=${j.state}`).join(', ')}`,
        );
      },
      timeoutMs,
    );
    expect(trace.events.map((e) => e.type).sort()).toEqual(
      [
        ...Array<string>(FAN_OUT).fill('res.done'),
        ...Array<string>(FAN_OUT).fill('res.item'),
        'res.root',
      ].sort(),
    );
    expect(new Set(trace.events.map((e) => e.eventId)).size).toBe(EVENTS_PER_ROOT);
    expect(trace.jobs.map((j) => j.module).sort()).toEqual(
      [
        'res-fan',
        ...Array<string>(FAN_OUT).fill('res-sink'),
        ...Array<string>(FAN_OUT).fill('res-slow'),
      ].sort(),
    );
    expect(new Set(trace.jobs.map((j) => j.jobId)).size).toBe(JOBS_PER_ROOT);
    attempts.push(...trace.jobs.map((j) => j.attempts));
  }
  // No stray events or jobs, no dead letters, and the relays published the whole outbox.
  expect(await countRows(schema, 'events')).toBe(ROOTS * EVENTS_PER_ROOT);
  expect(await countRows(schema, 'jobs')).toBe(ROOTS * JOBS_PER_ROOT);
  expect(await countRows(schema, 'jobs', "state <> 'succeeded'")).toBe(0);
  expect(await countRows(schema, 'dead_letters')).toBe(0);
  await waitFor(
    'the outbox to be fully published',
    async () =>
      (await countRows(schema, 'outbox', 'published_at IS NULL')) === 0 ? true : undefined,
    10_000,
  );
  return attempts;
}

/** S3 on s3rver, and no API tokens (`ion server` turns auth on by default): not tested here. */
function s3Env(s3: RunningS3rver): Record<string, string> {
  return {
    ION_AUTH: 'off',
    ION_BLOB: 's3',
    ION_S3_BUCKET: uniqueName('ion-res-'),
    ION_S3_ENDPOINT: s3.endpoint,
    ION_S3_FORCE_PATH_STYLE: 'true',
    ION_S3_ACCESS_KEY_ID: 'S3RVER',
    ION_S3_SECRET_ACCESS_KEY: 'S3RVER',
    ION_S3_CHECKSUMS: 'when_required',
  };
}

let s3: RunningS3rver | undefined;

beforeAll(async () => {
  s3 = await startS3rver();
});

afterAll(async () => {
  await s3?.stop();
});

describe('the NATS server restarted in the middle of a run', () => {
  const schema = uniqueName('ion_res_');
  let nats: PrivateNatsServer | undefined;

  afterAll(async () => {
    await nats?.dispose();
    await dropSchema(schema);
  });

  it(
    'loses no published event: every job succeeds once, every event exists once, no process dies',
    { timeout: 180_000 },
    async () => {
      nats = await startNatsServer();
      const dir = await tempDir('ion-res-');
      const markers = join(dir, 'markers');
      const pipeline = await writeResiliencePipeline(dir, markers);
      const cluster = await startResilienceCluster({
        ION_BUS: 'nats',
        ION_NATS_SERVERS: nats.url,
        ION_NATS_STREAM: uniqueName('ION_RES_'),
        ION_STORE: 'postgres',
        ION_POSTGRES_URL: POSTGRES_URL,
        ION_POSTGRES_SCHEMA: schema,
        ION_POSTGRES_POOL_SIZE: '4',
        ...s3Env(s3!),
      });
      try {
        const roots = await startWork(cluster, pipeline, markers);

        await nats.stop(); // returns once the process exited and the port refuses connections
        const downAt = Date.now();
        // Down for a couple of seconds, and the cluster kept committing meanwhile: the notices
        // of those events wait in the outbox for the relays to publish them.
        await waitFor(
          'the broker to be down for 2 s with committed events waiting in the outbox',
          async () =>
            Date.now() - downAt >= 2_000 &&
            (await countRows(schema, 'outbox', 'published_at IS NULL')) > 0
              ? true
              : undefined,
          20_000,
        );
        expect(nats.proc, 'the broker is down').toBeUndefined();
        expectAlive(cluster.procs);
        await nats.start(); // same port, same store directory

        const attempts = await expectAllSucceeded(cluster.client, roots, schema, 120_000);
        // The store was up all along: no job needed a second attempt, each res-slow job ran once.
        expect(attempts.filter((a) => a !== 1)).toEqual([]);
        const ran = await markerFiles(markers);
        expect(ran.length).toBe(SLOW_JOBS);
        expect(ran.filter((m) => !m.endsWith('.1'))).toEqual([]);
        expectAlive(cluster.procs);
      } finally {
        await cluster.stop();
        await cleanup(dir);
      }
    },
  );
});

describe('PostgreSQL unreachable for a few seconds', () => {
  const schema = uniqueName('ion_res_');
  const stream = uniqueName('ION_RES_');
  let proxy: TcpProxy | undefined;

  afterAll(async () => {
    await proxy?.close();
    await dropSchema(schema);
    const nc = await natsConnect({ servers: NATS_URL });
    try {
      const jsm = await nc.jetstreamManager();
      await jsm.streams.delete(stream).catch(() => undefined);
    } finally {
      await nc.close();
    }
  });

  it(
    'workers back off and recover: every job succeeds, nothing is duplicated, no process dies',
    { timeout: 180_000 },
    async () => {
      const target = new URL(POSTGRES_URL);
      proxy = await startTcpProxy(Number(target.port || 5432), target.hostname);
      const proxied = new URL(POSTGRES_URL);
      proxied.port = String(proxy.port);
      const dir = await tempDir('ion-res-');
      const markers = join(dir, 'markers');
      const pipeline = await writeResiliencePipeline(dir, markers);
      const cluster = await startResilienceCluster({
        ION_BUS: 'nats',
        ION_NATS_SERVERS: NATS_URL,
        ION_NATS_STREAM: stream,
        ION_STORE: 'postgres',
        ION_POSTGRES_URL: proxied.toString(),
        ION_POSTGRES_SCHEMA: schema,
        ION_POSTGRES_POOL_SIZE: '4',
        ...s3Env(s3!),
      });
      try {
        const roots = await startWork(cluster, pipeline, markers);
        const forwardedBefore = proxy.forwarded;
        expect(
          forwardedBefore,
          'every process reaches PostgreSQL through the proxy',
        ).toBeGreaterThan(0);

        proxy.pause(); // cuts every open connection and refuses new ones
        const pausedAt = Date.now();
        const refusedBefore = proxy.refused;
        // The API answers in the error format instead of hanging or crashing.
        const response = await fetch(
          `${cluster.url}/v1/traces/${encodeURIComponent(roots[0]!.correlationId)}`,
        );
        expect(response.status).toBe(503);
        const body = (await response.json()) as { error?: { code?: unknown; message?: unknown } };
        expect(body.error?.code).toBe('unavailable');
        expect(typeof body.error?.message).toBe('string');
        // Down for 3 s, with the processes still trying to connect meanwhile.
        await waitFor(
          'the store to be unreachable for 3 s while the processes keep retrying',
          () =>
            Date.now() - pausedAt >= 3_000 && proxy!.refused > refusedBefore ? true : undefined,
          20_000,
        );
        expectAlive(cluster.procs);
        proxy.resume();

        await expectAllSucceeded(cluster.client, roots, schema, 120_000);
        // Every res-slow job ran (attempts cut off by the outage ran again: that is allowed).
        const ran = new Set((await markerFiles(markers)).map((m) => m.split('.')[0]));
        expect(ran.size).toBe(SLOW_JOBS);
        expect(proxy.forwarded, 'the processes reconnected after the outage').toBeGreaterThan(
          forwardedBefore,
        );
        expectAlive(cluster.procs);
      } finally {
        await cluster.stop();
        await cleanup(dir);
      }
    },
  );
});
