/**
 * `BENCH_SUITE=backends npm run bench`: the three-stage trivial pipeline of bench/run.ts,
 * through an in-process IonApp, on each backend combination, compared with the embedded
 * defaults measured in the same run. See docs/benchmarks.md ("Backend combinations").
 *
 * Environment:
 *   BENCH_BACKEND_EVENTS  root events of the burst per combination (default 60)
 *   BENCH_BACKEND_PROBES  idle probes per combination, one at a time (default 10)
 *   BENCH_CONCURRENCY     every module's concurrency (default 4)
 *   BENCH_COMBOS          comma list, default embedded,nats-pg-s3,rabbitmq-pg-azure
 *   ION_TEST_POSTGRES_URL / ION_TEST_NATS_URL / ION_TEST_AMQP_URL  service URLs
 *
 * Every combination gets random names (NATS stream, AMQP exchange, Postgres schema, bucket,
 * container) and is cleaned up afterwards, failure or not.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import amqp from 'amqplib';
import { connect as natsConnect } from 'nats';
import pg from 'pg';
import { IonApp } from '../src/app/ion-app.js';
import { createLogger } from '../src/app/logger.js';
import { allDelayQueues, queuesOf } from '../src/bus/rabbitmq/rabbitmq-topology.js';
import { loadConfig } from '../src/config/config.js';
import type { Job } from '../src/core/types.js';
import { S3RVER_CREDENTIALS, startAzurite, startS3rverChild } from './emulators.js';
import { threeStagePipeline } from './pipelines.js';
import { f, intEnv, loadAverage, nsToMs, percentile, RssSampler, table, wallMs } from './util.js';

const EVENTS = intEnv('BENCH_BACKEND_EVENTS', 60);
const PROBES = intEnv('BENCH_BACKEND_PROBES', 10);
const CONCURRENCY = intEnv('BENCH_CONCURRENCY', 4);
const DEADLINE_MS = 120_000;
const POSTGRES_URL = process.env.ION_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const NATS_URL = process.env.ION_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
const AMQP_URL = process.env.ION_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';
const MODULES = ['stage1', 'stage2', 'stage3'] as const;

const START = `printf '[{"key":"started_ns","value":"%s"}]' "$(date +%s%N)" > out/insights.json`;
const pipeline = (): unknown => threeStagePipeline(START, CONCURRENCY);

const unique = (prefix: string): string =>
  `${prefix}${randomUUID().replaceAll('-', '').slice(0, 12)}`;

interface Setup {
  flags: Record<string, unknown>;
  cleanup(): Promise<void>;
}

interface Combo {
  id: string;
  label: string;
  setup(dataDir: string): Promise<Setup>;
}

async function dropSchema(schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: POSTGRES_URL });
  await client.connect();
  try {
    await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`);
  } finally {
    await client.end();
  }
}

async function deleteNatsStream(stream: string): Promise<void> {
  const nc = await natsConnect({ servers: NATS_URL.split(',') });
  try {
    const jsm = await nc.jetstreamManager();
    await jsm.streams.delete(stream).catch(() => false);
  } finally {
    await nc.close();
  }
}

/** AMQP cannot list queues: delete the names the bus uses (see rabbitmq-topology.ts). */
async function deleteRabbitTopology(exchange: string): Promise<void> {
  const conn = await amqp.connect(AMQP_URL);
  try {
    const ch = await conn.createChannel();
    for (const module of MODULES) {
      const q = queuesOf(`${exchange}.`, module);
      for (const queue of [q.main, q.dlq, q.meta, ...allDelayQueues(q.main)])
        await ch.deleteQueue(queue);
    }
    await ch.deleteExchange(exchange);
    await ch.close();
  } finally {
    await conn.close();
  }
}

/** Runs every cleanup step even when one fails; rethrows the first failure. */
async function all(steps: (() => Promise<unknown>)[]): Promise<void> {
  const failures: unknown[] = [];
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      failures.push(err);
    }
  }
  if (failures.length === 1 && failures[0] instanceof Error) throw failures[0];
  if (failures.length > 0) throw new AggregateError(failures, 'cleanup failed');
}

const COMBOS: Combo[] = [
  {
    id: 'embedded',
    label: 'embedded: SQLite bus + SQLite store + fs blobs',
    setup: () => Promise.resolve({ flags: {}, cleanup: () => Promise.resolve() }),
  },
  {
    id: 'nats-pg-s3',
    label: 'NATS JetStream + PostgreSQL + S3 (s3rver)',
    async setup() {
      const s3 = await startS3rverChild();
      const stream = unique('ION_BENCH_');
      const schema = unique('ion_bench_');
      return {
        flags: {
          bus: { kind: 'nats', servers: NATS_URL, stream },
          store: { kind: 'postgres', url: POSTGRES_URL, schema },
          blob: {
            kind: 's3',
            bucket: unique('ion-bench-'),
            endpoint: s3.endpoint,
            forcePathStyle: true,
            ...S3RVER_CREDENTIALS,
            checksums: 'when_required',
          },
        },
        cleanup: () =>
          all([() => deleteNatsStream(stream), () => dropSchema(schema), () => s3.stop()]),
      };
    },
  },
  {
    id: 'rabbitmq-pg-azure',
    label: 'RabbitMQ + PostgreSQL + Azure Blob (Azurite)',
    async setup() {
      const azure = await startAzurite();
      const exchange = unique('ion-bench-');
      const schema = unique('ion_bench_');
      return {
        flags: {
          bus: { kind: 'rabbitmq', url: AMQP_URL, exchange },
          store: { kind: 'postgres', url: POSTGRES_URL, schema },
          blob: {
            kind: 'azure',
            connectionString: azure.connectionString,
            container: unique('ion-bench-'),
          },
        },
        cleanup: () =>
          all([() => deleteRabbitTopology(exchange), () => dropSchema(schema), () => azure.stop()]),
      };
    },
  },
];

interface Latencies {
  publishToStart: number[];
  parentDoneToStart: number[];
  endToEnd: number[];
}

interface ComboResult {
  combo: Combo;
  seconds: number;
  eventsPerSec: number;
  jobsPerSec: number;
  idle: Latencies;
  burst: Latencies;
  peakRssMb: number;
  cpuMsPerJob: number;
  setupSeconds: number;
}

async function runCombo(combo: Combo): Promise<ComboResult> {
  const setupStart = performance.now();
  const dataDir = await mkdtemp(join(tmpdir(), 'ion-bench-be-'));
  const setup = await combo.setup(dataDir);
  let app: IonApp | undefined;
  try {
    const config = loadConfig({ flags: { dataDir, logLevel: 'silent', ...setup.flags } });
    app = await IonApp.create(
      config,
      createLogger('silent'),
      { api: false, relay: true, workers: true },
      process.env,
    );
    await app.start();
    await app.control.applyPipeline(pipeline());
    const setupSeconds = (performance.now() - setupStart) / 1000;
    const store = app.backends.store;
    const rss = new RssSampler(50);

    // Done when every root's stage3 job succeeded (stage3 runs last in each tree).
    const waitForStage3 = async (target: number, deadline: number): Promise<void> => {
      for (let poll = 0; ; poll++) {
        const done = await store.listJobs({ module: 'stage3', state: 'succeeded', limit: 100_000 });
        if (done.length >= target) return;
        if (poll % 10 === 9) {
          const bad = [
            ...(await store.listJobs({ state: 'failed', limit: 1 })),
            ...(await store.listJobs({ state: 'dead_lettered', limit: 1 })),
          ];
          if (bad.length > 0)
            throw new Error(`${combo.id}: a bench job failed: ${bad[0]!.lastError ?? '?'}`);
        }
        if (performance.now() > deadline)
          throw new Error(`${combo.id}: timed out: ${done.length}/${target} trees done`);
        await new Promise((r) => setTimeout(r, 25));
      }
    };
    const publishedAt = new Map<string, number>();
    const publish = async (i: number): Promise<string> => {
      const at = wallMs();
      const { event } = await app!.control.publish({
        type: 'bench.start',
        data: { i: String(i) },
      });
      publishedAt.set(event.correlationId, at);
      return event.correlationId;
    };

    // Idle probes (also the warm-up): one root event at a time, each waited through all stages.
    const idleIds: string[] = [];
    for (let i = 0; i < PROBES; i++) {
      idleIds.push(await publish(-1 - i));
      await waitForStage3(i + 1, performance.now() + DEADLINE_MS);
    }

    // Burst: all root events at once.
    rss.reset();
    const cpuBefore = process.cpuUsage();
    const t0 = wallMs();
    const burstIds: string[] = [];
    for (let i = 0; i < EVENTS; i++) burstIds.push(await publish(i));
    await waitForStage3(PROBES + EVENTS, performance.now() + DEADLINE_MS);
    const cpu = process.cpuUsage(cpuBefore);
    const peakRssMb = rss.peak() / 1024 / 1024;
    rss.stop();

    const latencies = async (ids: string[]): Promise<{ l: Latencies; lastDone: number }> => {
      const out: Latencies = { publishToStart: [], parentDoneToStart: [], endToEnd: [] };
      let lastDone = 0;
      for (const id of ids) {
        const trace = await store.trace(id);
        const jobOf = (module: string): Job | undefined =>
          trace.jobs.find((j) => j.module === module);
        const startOf = (module: string): number | undefined => {
          const v = trace.insights.find((i) => i.module === module && i.key === 'started_ns');
          return v === undefined ? undefined : nsToMs(v.value);
        };
        const s1 = startOf('stage1');
        const s2 = startOf('stage2');
        const j1 = jobOf('stage1');
        if (s1 !== undefined) out.publishToStart.push(s1 - publishedAt.get(id)!);
        if (s2 !== undefined && j1?.finishedAt != null)
          out.parentDoneToStart.push(s2 - Date.parse(j1.finishedAt));
        const done = Math.max(...trace.jobs.map((j) => Date.parse(j.finishedAt ?? '')));
        out.endToEnd.push(done - publishedAt.get(id)!);
        lastDone = Math.max(lastDone, done);
      }
      return { l: out, lastDone };
    };
    const burst = await latencies(burstIds);
    const idle = await latencies(idleIds);
    const seconds = (burst.lastDone - t0) / 1000;
    return {
      combo,
      seconds,
      eventsPerSec: EVENTS / seconds,
      jobsPerSec: (EVENTS * 3) / seconds,
      idle: idle.l,
      burst: burst.l,
      peakRssMb,
      cpuMsPerJob: (cpu.user + cpu.system) / 1000 / (EVENTS * 3),
      setupSeconds,
    };
  } finally {
    await app?.stop();
    await all([() => setup.cleanup(), () => rm(dataDir, { recursive: true, force: true })]);
  }
}

const pct = (v: number[]): string => `${f(percentile(v, 50))} / ${f(percentile(v, 99))}`;
const ratio = (a: number, b: number): string => f(a / b, 2);

export async function runBackendsSuite(): Promise<void> {
  const started = performance.now();
  const wanted = (process.env.BENCH_COMBOS ?? COMBOS.map((c) => c.id).join(','))
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = wanted.filter((id) => !COMBOS.some((c) => c.id === id));
  if (unknown.length > 0) throw new Error(`unknown BENCH_COMBOS entries: ${unknown.join(', ')}`);
  const combos = COMBOS.filter((c) => wanted.includes(c.id));
  console.log(
    `Ion bench, backend combinations: ${EVENTS} burst events + ${PROBES} idle probes per combination, ` +
      `3 stages × concurrency ${CONCURRENCY}, ${cpus().length} CPUs, Node ${process.version}, load average ${loadAverage()}`,
  );
  const results: ComboResult[] = [];
  for (const combo of combos) {
    console.log(`- ${combo.label} …`);
    results.push(await runCombo(combo));
  }
  const ref = results.find((r) => r.combo.id === 'embedded') ?? results[0]!;
  const p = (v: number[], q: number): number => percentile(v, q);

  console.log(`\n## Throughput (burst of ${EVENTS} root events = ${EVENTS * 3} jobs)\n`);
  const rows = [
    [
      'backends',
      'seconds',
      'events/s',
      'jobs/s',
      'ratio vs embedded',
      'Node CPU ms / job',
      'peak RSS (50 ms)',
      'setup s',
    ],
  ];
  for (const r of results)
    rows.push([
      r.combo.label,
      f(r.seconds, 2),
      f(r.eventsPerSec, 2),
      f(r.jobsPerSec),
      ratio(r.jobsPerSec, ref.jobsPerSec),
      f(r.cpuMsPerJob, 1),
      `${f(r.peakRssMb)} MB`,
      f(r.setupSeconds, 1),
    ]);
  console.log(table(rows));

  for (const [phase, key] of [
    [`idle (${PROBES} events one at a time)`, 'idle'],
    [`burst (${EVENTS} at once, includes queueing)`, 'burst'],
  ] as const) {
    console.log(`\n## Latency, ${phase} (ms, p50 / p99; ratio = this ÷ embedded)\n`);
    const lat = [
      [
        'backends',
        'publish → stage1 start',
        'ratio p50 / p99',
        'stage1 finished → stage2 start',
        'ratio p50 / p99',
        'publish → tree done',
      ],
    ];
    for (const r of results) {
      const l = r[key];
      const refL = ref[key];
      lat.push([
        r.combo.label,
        pct(l.publishToStart),
        `${ratio(p(l.publishToStart, 50), p(refL.publishToStart, 50))} / ${ratio(p(l.publishToStart, 99), p(refL.publishToStart, 99))}`,
        pct(l.parentDoneToStart),
        `${ratio(p(l.parentDoneToStart, 50), p(refL.parentDoneToStart, 50))} / ${ratio(p(l.parentDoneToStart, 99), p(refL.parentDoneToStart, 99))}`,
        pct(l.endToEnd),
      ]);
    }
    console.log(table(lat));
  }
  console.log(
    `\nbench finished in ${f((performance.now() - started) / 1000)} s, load average ${loadAverage()}`,
  );
}
