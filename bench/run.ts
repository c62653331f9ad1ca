/**
 * `npm run bench`: Ion's throughput, latency and memory against a plain Node spawn loop.
 * See docs/benchmarks.md for what each figure means and how to read the ratio.
 *
 * Environment:
 *   BENCH_EVENTS       root events of the burst (default 200)
 *   BENCH_CONCURRENCY  baseline concurrency and every module's concurrency (default 4)
 *   BENCH_PROBES       events of the idle latency probe, sent one at a time (default 20)
 *   BENCH_ONE_STAGE    0 skips the 1-stage run (default 1; it uses min(BENCH_EVENTS, 200) events)
 *   BENCH_ONLY         ion: skip the baselines and the 1-stage run (for profiling)
 *   BENCH_TWEAKS       comma list of what-if experiments applied to Ion's adapters from
 *                      outside (src/ untouched): bus-sync-normal, no-log-blob, no-instrument;
 *                      inline-spawn / thread-spawn set executor.spawnOn to inline / thread
 *                      (the default is process: a launcher process forks the modules)
 *
 *   BENCH_SUITE        default (this bench), backends (bench/backends.ts: the same pipeline on
 *                      NATS/RabbitMQ + PostgreSQL + S3/Azure against the embedded defaults),
 *                      large (bench/large.ts: 256 MiB and 1 GiB blobs through fs, S3, Azure) or
 *                      replay (bench/replay.ts: a backfill's request and jobs against ordinary
 *                      processing of the same events) or warm (bench/warm.ts: the same
 *                      three-stage module cold and warm beside plain spawn loops, and a
 *                      module that loads slowly) or containers (bench/containers.ts: the same
 *                      pipeline as processes and as containers beside a `docker run --rm` loop)
 *                      or tracing (bench/tracing.ts: the same pipeline with tracing off and on,
 *                      exporting to a loopback OTLP receiver) or warm-container
 *                      (bench/warm-container.ts: a module as a cold container per job and as a
 *                      warm container, on dockerd and podman)
 *
 * Nothing is written into the repository: data lives in mkdtemp dirs, removed at the end.
 */
import type { JobRequest } from '../src/executors/job-host.js';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { IonApp, moduleBaseEnv } from '../src/app/ion-app.js';
import { createLogger } from '../src/app/logger.js';
import { loadConfig } from '../src/config/config.js';
import { instrumentSqlite, localHost, type SqlTimes } from './util.js';
import { benchModule, raiseScript, threeStagePipeline } from './pipelines.js';

const N = intEnv('BENCH_EVENTS', 200);
const CONCURRENCY = intEnv('BENCH_CONCURRENCY', 4);
const PROBES = intEnv('BENCH_PROBES', 20);
const ONE_STAGE = process.env.BENCH_ONE_STAGE !== '0' && process.env.BENCH_ONLY !== 'ion';
const ONLY_ION = process.env.BENCH_ONLY === 'ion';
const TWEAKS = new Set(
  (process.env.BENCH_TWEAKS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
);
const DEADLINE_MS = 150_000;

function intEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return n;
}

// -- spawn() timing: the synchronous part of child_process.spawn (libuv forks the whole process
// here, so its cost grows with this process's memory). Patched on the builtin and synced into
// ESM bindings so Ion's local executor is measured exactly like the baseline.
const spawnTime = { ms: 0, count: 0 };
{
  const cp = createRequire(import.meta.url)(
    'node:child_process',
  ) as typeof import('node:child_process');
  const original = cp.spawn;
  cp.spawn = function timedSpawn(this: unknown, ...args: unknown[]) {
    const t = performance.now();
    try {
      return (original as (...a: unknown[]) => unknown).apply(this, args);
    } finally {
      spawnTime.ms += performance.now() - t;
      spawnTime.count += 1;
    }
  } as typeof cp.spawn;
  syncBuiltinESMExports();
}

// -- the trivial modules ----------------------------------------------------------------------
// Every stage records when it started (wall clock, ns) as an insight; stages 1 and 2 raise one
// event. The baseline runs exactly these scripts, so both sides pay the same fork+exec cost.
const START = `printf '[{"key":"started_ns","value":"%s"}]' "$(date +%s%N)" > out/insights.json`;
const SCRIPTS = {
  stage1: raiseScript(START, 'bench.s1'),
  stage2: raiseScript(START, 'bench.s2'),
  stage3: START,
} as const;

function pipeline(stages: 1 | 3, concurrency: number): unknown {
  if (stages === 3) return threeStagePipeline(START, concurrency);
  return { modules: [benchModule('stage1', 'bench.start', [], SCRIPTS.stage3, concurrency)] };
}

// -- measurement helpers ----------------------------------------------------------------------
const wallMs = (): number => performance.timeOrigin + performance.now();
const nsToMs = (ns: string): number => Number(BigInt(ns) / 1000n) / 1000;

/** CPU seconds: this process, its waited-for children (from /proc/self/stat), and the machine. */
function cpuSnapshot(): {
  self: number;
  children: number;
  machineBusy: number;
  machineTotal: number;
} {
  const usage = process.cpuUsage();
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const hz = 100;
  const children = (Number(fields[13]) + Number(fields[14])) / hz; // cutime + cstime
  const cpu = readFileSync('/proc/stat', 'utf8')
    .split('\n')[0]!
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0);
  const total = cpu.reduce((a, b) => a + b, 0);
  return {
    self: (usage.user + usage.system) / 1e6,
    children,
    machineBusy: (total - idle) / hz,
    machineTotal: total / hz,
  };
}

interface CpuUse {
  /** CPU seconds of the Node process per run/job, ms. */
  selfMsPerRun: number;
  childMsPerRun: number;
  /** Machine-wide busy share over the phase (1 = both cores busy). */
  machineBusy: number;
  /** Synchronous time inside child_process.spawn per run, ms (part of selfMsPerRun). */
  spawnMsPerRun: number;
  /** RSS of this process at the end of the phase, MB. */
  rssMb: number;
}

function cpuSnapshotWithSpawn(): ReturnType<typeof cpuSnapshot> & { spawnMs: number } {
  return { ...cpuSnapshot(), spawnMs: spawnTime.ms };
}

function cpuSince(before: ReturnType<typeof cpuSnapshotWithSpawn>, runs: number): CpuUse {
  const after = cpuSnapshotWithSpawn();
  const total = after.machineTotal - before.machineTotal;
  return {
    selfMsPerRun: ((after.self - before.self) * 1000) / runs,
    childMsPerRun: ((after.children - before.children) * 1000) / runs,
    machineBusy: total > 0 ? (after.machineBusy - before.machineBusy) / total : 0,
    spawnMsPerRun: (after.spawnMs - before.spawnMs) / runs,
    rssMb: process.memoryUsage().rss / 1024 / 1024,
  };
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[
    Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  ]!;
}

// -- baseline ---------------------------------------------------------------------------------
interface BaselineResult {
  runs: number;
  concurrency: number;
  seconds: number;
  runsPerSec: number;
  cpu: CpuUse;
}

function spawnAndWait(
  script: string,
  cwd: string,
  env: Record<string, string>,
): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', script], { cwd, env, stdio: 'ignore' });
    child.once('error', reject);
    child.once('exit', (code) => resolve(code));
  });
}

/** A plain loop: per run, make a job-like dir (in/data, out/data, out/events, eventmeta), spawn, wait, remove. */
async function runBaseline(scripts: string[], concurrency: number): Promise<BaselineResult> {
  const root = await mkdtemp(join(tmpdir(), 'ion-bench-base-'));
  const env = moduleBaseEnv(process.env);
  let next = 0;
  const before = cpuSnapshotWithSpawn();
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < scripts.length) {
      const i = next++;
      const dir = join(root, 'jobs', String(i));
      await Promise.all(
        ['in/data', 'out/data', 'out/events'].map((d) => mkdir(join(dir, d), { recursive: true })),
      );
      await writeFile(join(dir, 'in', 'eventmeta.json'), '[]');
      const code = await spawnAndWait(scripts[i]!, dir, env);
      if (code !== 0) throw new Error(`baseline run ${i} exited with ${code}`);
      await rm(dir, { recursive: true, force: true });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const seconds = (performance.now() - t0) / 1000;
  const cpu = cpuSince(before, scripts.length);
  await rm(root, { recursive: true, force: true });
  return { runs: scripts.length, concurrency, seconds, runsPerSec: scripts.length / seconds, cpu };
}

// -- instrumentation of Ion's adapters (from outside: wraps instance methods) ------------------
interface Instrument {
  inflight: number;
  peak: number;
  /** Integral of in-flight module processes over time (ms), for the average parallelism. */
  busyIntegral: number;
  lastChange: number;
  execWallMs: number;
  execCount: number;
  putFileMs: number;
  putFileCount: number;
  /** Synchronous time inside SQLite calls, per adapter and action. */
  sql: SqlTimes;
  reset(): void;
}

async function instrument(app: IonApp, logDir: string): Promise<Instrument> {
  const stats: Instrument = {
    inflight: 0,
    peak: 0,
    busyIntegral: 0,
    lastChange: performance.now(),
    execWallMs: 0,
    execCount: 0,
    putFileMs: 0,
    putFileCount: 0,
    sql: new Map(),
    reset() {
      this.peak = this.inflight;
      this.busyIntegral = 0;
      this.lastChange = performance.now();
      this.execWallMs = 0;
      this.execCount = 0;
      this.putFileMs = 0;
      this.putFileCount = 0;
      this.sql.clear();
    },
  };
  const { blobs, store, bus } = app.backends;
  const executor = await localHost(app);
  const tick = (delta: number): void => {
    const now = performance.now();
    stats.busyIntegral += stats.inflight * (now - stats.lastChange);
    stats.lastChange = now;
    stats.inflight += delta;
    stats.peak = Math.max(stats.peak, stats.inflight);
  };
  const run = executor.run.bind(executor);
  executor.run = async (spec: JobRequest) => {
    const t = performance.now();
    tick(1);
    try {
      return await run(spec);
    } finally {
      tick(-1);
      stats.execWallMs += performance.now() - t;
      stats.execCount += 1;
    }
  };
  const putFile = blobs.putFile.bind(blobs);
  blobs.putFile = async (path) => {
    if (TWEAKS.has('no-log-blob') && path.startsWith(logDir))
      return { sha256: '0'.repeat(64), size: 0 };
    const t = performance.now();
    try {
      return await putFile(path);
    } finally {
      stats.putFileMs += performance.now() - t;
      stats.putFileCount += 1;
    }
  };
  if (TWEAKS.has('no-instrument')) return stats;
  instrumentSqlite({ store, bus }, stats.sql);
  return stats;
}

// -- Ion ----------------------------------------------------------------------------------------
interface Latencies {
  publishToStart: number[];
  parentDoneToStart: number[];
  endToEnd: number[];
}

interface IonResult {
  stages: 1 | 3;
  events: number;
  jobs: number;
  seconds: number;
  eventsPerSec: number;
  jobsPerSec: number;
  peakParallel: number;
  avgParallel: number;
  burst: Latencies;
  idle: Latencies;
  peakRssMb: number;
  cpu: CpuUse;
  elu: number;
  execWallMsPerJob: number;
  putFileMsPerJob: number;
  sql: SqlTimes;
}

async function runIon(stages: 1 | 3, events: number, concurrency: number): Promise<IonResult> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ion-bench-'));
  const config = loadConfig({
    flags: {
      dataDir,
      logLevel: 'silent',
      executor: {
        kind: 'local',
        spawnOn: TWEAKS.has('thread-spawn')
          ? 'thread'
          : TWEAKS.has('inline-spawn')
            ? 'inline'
            : 'process',
      },
    },
  });
  const app = await IonApp.create(
    config,
    createLogger('silent'),
    { api: false, relay: true, workers: true },
    process.env,
  );
  const stats = await instrument(app, join(config.dataDir, 'logs'));
  let peakRss = process.memoryUsage().rss;
  const rssTimer = setInterval(() => {
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
  }, 50);
  await app.start();
  if (TWEAKS.has('bus-sync-normal')) {
    (app.backends.bus as unknown as { db: Database.Database }).db.pragma('synchronous = NORMAL');
  }
  await app.control.applyPipeline(pipeline(stages, concurrency));
  const reader = new Database(join(dataDir, 'store.db'), { readonly: true });
  const countDone = reader.prepare("SELECT count(*) FROM jobs WHERE state = 'succeeded'").pluck();
  const countBad = reader
    .prepare("SELECT count(*) FROM jobs WHERE state IN ('failed', 'dead_lettered')")
    .pluck();
  const waitForJobs = async (target: number, deadline: number): Promise<void> => {
    while ((countDone.get() as number) < target) {
      if ((countBad.get() as number) > 0) throw new Error(`a bench job failed; see ${dataDir}`);
      if (performance.now() > deadline)
        throw new Error(`timed out: ${String(countDone.get())}/${target} jobs succeeded`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const publishedAt = new Map<string, number>();
  const publish = async (i: number): Promise<string> => {
    const at = wallMs();
    const { event } = await app.control.publish({ type: 'bench.start', data: { i: String(i) } });
    publishedAt.set(event.eventId, at);
    return event.eventId;
  };
  const start = performance.now();

  // Phase 1, idle latency (also warms up): one root event at a time, each waited through all stages.
  const idleIds: string[] = [];
  for (let i = 0; i < PROBES; i++) {
    idleIds.push(await publish(-1 - i));
    await waitForJobs((i + 1) * stages, start + DEADLINE_MS);
  }

  // Phase 2, burst: all root events at once; throughput and loaded latency.
  stats.reset();
  const eluBefore = performance.eventLoopUtilization();
  const cpuBefore = cpuSnapshotWithSpawn();
  const t0 = wallMs();
  const burstIds: string[] = [];
  for (let i = 0; i < events; i++) burstIds.push(await publish(i));
  await waitForJobs((PROBES + events) * stages, performance.now() + DEADLINE_MS);
  const lastFinished = reader
    .prepare(
      `SELECT max(finished_at) FROM jobs WHERE correlation_id IN (SELECT value FROM json_each(?))`,
    )
    .pluck()
    .get(JSON.stringify(burstIds)) as string;
  const seconds = (Date.parse(lastFinished) - t0) / 1000;
  const cpu = cpuSince(cpuBefore, events * stages);
  const elu = performance.eventLoopUtilization(eluBefore).utilization;
  stats.busyIntegral += stats.inflight * (performance.now() - stats.lastChange);
  const burstWindowMs = seconds * 1000;

  const latencies = (ids: string[]): Latencies => {
    const rows = reader
      .prepare(
        `SELECT i.module, i.value AS started, e.correlation_id AS root, p.finished_at AS parent_done
         FROM insights i JOIN events e ON e.event_id = i.event_id
         LEFT JOIN jobs p ON p.event_id = e.parent_event_id AND p.module = e.source
         WHERE i.key = 'started_ns' AND e.correlation_id IN (SELECT value FROM json_each(?))`,
      )
      .all(JSON.stringify(ids)) as {
      module: string;
      started: string;
      root: string;
      parent_done: string | null;
    }[];
    const lastDone = new Map(
      (
        reader
          .prepare(
            `SELECT correlation_id AS root, max(finished_at) AS done FROM jobs WHERE correlation_id IN (SELECT value FROM json_each(?)) GROUP BY correlation_id`,
          )
          .all(JSON.stringify(ids)) as { root: string; done: string }[]
      ).map((r) => [r.root, Date.parse(r.done)]),
    );
    const out: Latencies = { publishToStart: [], parentDoneToStart: [], endToEnd: [] };
    for (const row of rows) {
      const started = nsToMs(row.started);
      if (row.module === 'stage1') out.publishToStart.push(started - publishedAt.get(row.root)!);
      if (row.module === 'stage2' && row.parent_done !== null)
        out.parentDoneToStart.push(started - Date.parse(row.parent_done));
    }
    for (const id of ids) out.endToEnd.push(lastDone.get(id)! - publishedAt.get(id)!);
    return out;
  };
  const result: IonResult = {
    stages,
    events,
    jobs: events * stages,
    seconds,
    eventsPerSec: events / seconds,
    jobsPerSec: (events * stages) / seconds,
    peakParallel: stats.peak,
    avgParallel: stats.busyIntegral / burstWindowMs,
    burst: latencies(burstIds),
    idle: latencies(idleIds),
    peakRssMb: 0,
    cpu,
    elu,
    execWallMsPerJob: stats.execWallMs / Math.max(1, stats.execCount),
    putFileMsPerJob: stats.putFileMs / (events * stages),
    sql: new Map(stats.sql),
  };
  reader.close();
  await app.stop();
  clearInterval(rssTimer);
  result.peakRssMb = peakRss / 1024 / 1024;
  await rm(dataDir, { recursive: true, force: true });
  return result;
}

// -- output -------------------------------------------------------------------------------------
const f = (n: number, digits = 1): string => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  const line = (r: string[]): string =>
    `| ${r.map((cell, c) => cell.padEnd(widths[c]!)).join(' | ')} |`;
  return [
    line(rows[0]!),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...rows.slice(1).map(line),
  ].join('\n');
}

const pct = (v: number[]): string => `${f(percentile(v, 50))} / ${f(percentile(v, 99))}`;

async function main(): Promise<void> {
  const started = performance.now();
  console.log(
    `Ion bench: ${N} root events, concurrency ${CONCURRENCY}, ${cpus().length} CPUs (${cpus()[0]?.model.trim() ?? '?'}), Node ${process.version}` +
      (TWEAKS.size > 0 ? `, tweaks: ${[...TWEAKS].join(',')}` : ''),
  );
  const threeStageScripts = Array.from({ length: N }, () => [
    SCRIPTS.stage1,
    SCRIPTS.stage2,
    SCRIPTS.stage3,
  ]).flat();

  const skipped: BaselineResult = {
    runs: 0,
    concurrency: CONCURRENCY,
    seconds: NaN,
    runsPerSec: NaN,
    cpu: {
      selfMsPerRun: NaN,
      childMsPerRun: NaN,
      machineBusy: NaN,
      spawnMsPerRun: NaN,
      rssMb: NaN,
    },
  };
  const base = ONLY_ION ? skipped : await runBaseline(threeStageScripts, CONCURRENCY);
  const ion3 = await runIon(3, N, CONCURRENCY);
  const peak = ion3.peakParallel;
  // At Ion's peak parallelism; a slice of the runs is enough to measure the rate.
  const baseAtPeak =
    peak > CONCURRENCY && !ONLY_ION
      ? await runBaseline(threeStageScripts.slice(0, Math.min(threeStageScripts.length, 300)), peak)
      : base;
  // The 1-stage comparison is capped at 200 events to keep `BENCH_EVENTS=500` within ~3 minutes.
  const n1 = Math.min(N, 200);
  const ion1 = ONE_STAGE ? await runIon(1, n1, CONCURRENCY) : null;
  const base1 = ONE_STAGE
    ? await runBaseline(
        Array.from({ length: n1 }, () => SCRIPTS.stage3),
        CONCURRENCY,
      )
    : null;

  console.log('\n## Throughput\n');
  const rows = [
    [
      'run',
      'process runs',
      'parallelism',
      'seconds',
      'runs (jobs)/s',
      'root events/s',
      'ratio vs baseline c' + String(CONCURRENCY),
    ],
    [
      `baseline, 3 scripts × ${N}`,
      String(base.runs),
      `${base.concurrency}`,
      f(base.seconds, 2),
      f(base.runsPerSec),
      f(base.runsPerSec / 3),
      '1.00',
    ],
  ];
  if (baseAtPeak !== base) {
    rows.push([
      `baseline, 3 scripts (first ${baseAtPeak.runs} runs)`,
      String(baseAtPeak.runs),
      `${baseAtPeak.concurrency}`,
      f(baseAtPeak.seconds, 2),
      f(baseAtPeak.runsPerSec),
      f(baseAtPeak.runsPerSec / 3),
      f(baseAtPeak.runsPerSec / base.runsPerSec, 2),
    ]);
  }
  rows.push([
    `Ion, 3 stages × c${CONCURRENCY}`,
    String(ion3.jobs),
    `avg ${f(ion3.avgParallel)}, peak ${ion3.peakParallel}`,
    f(ion3.seconds, 2),
    f(ion3.jobsPerSec),
    f(ion3.eventsPerSec),
    f(ion3.jobsPerSec / base.runsPerSec, 2),
  ]);
  if (ion1 !== null && base1 !== null) {
    rows.push([
      `baseline, 1 script × ${base1.runs}`,
      String(base1.runs),
      `${base1.concurrency}`,
      f(base1.seconds, 2),
      f(base1.runsPerSec),
      f(base1.runsPerSec),
      '-',
    ]);
    rows.push([
      `Ion, 1 stage × c${CONCURRENCY}`,
      String(ion1.jobs),
      `avg ${f(ion1.avgParallel)}, peak ${ion1.peakParallel}`,
      f(ion1.seconds, 2),
      f(ion1.jobsPerSec),
      f(ion1.eventsPerSec),
      `${f(ion1.jobsPerSec / base1.runsPerSec, 2)} (vs 1-script baseline)`,
    ]);
  }
  console.log(table(rows));
  const conservative = ion3.jobsPerSec / Math.max(base.runsPerSec, baseAtPeak.runsPerSec);
  const cpuCost = (c: CpuUse): number => c.selfMsPerRun + c.childMsPerRun;
  console.log(
    `\nCPU cost per process run (Node + children): baseline ${f(cpuCost(base.cpu), 1)} ms, Ion ${f(cpuCost(ion3.cpu), 1)} ms` +
      ` -> CPU-bound ratio ${f(cpuCost(base.cpu) / cpuCost(ion3.cpu), 2)} (what the ratio converges to on a saturated machine; less sensitive to other load than wall time)`,
  );
  console.log(
    `Ratio Ion jobs/s ÷ baseline runs/s (3 stages): ${f(ion3.jobsPerSec / base.runsPerSec, 2)} at baseline concurrency ${CONCURRENCY}` +
      (baseAtPeak !== base
        ? `; ${f(conservative, 2)} against the best baseline (concurrency ${CONCURRENCY} or ${peak}, Ion's peak)`
        : '') +
      '. Target: ≥ 0.70.',
  );

  console.log('\n## Latency (ms, p50 / p99)\n');
  const latRows = [
    [
      'run',
      'publish → stage1 start',
      'stage1 job finished → stage2 start',
      'publish → last job finished',
    ],
  ];
  const latRow = (label: string, l: Latencies, stages: number): string[] => [
    label,
    pct(l.publishToStart),
    stages === 3 ? pct(l.parentDoneToStart) : '-',
    pct(l.endToEnd),
  ];
  latRows.push(latRow(`3 stages, idle (${PROBES} events one at a time)`, ion3.idle, 3));
  latRows.push(latRow(`3 stages, burst (${N} at once, includes queueing)`, ion3.burst, 3));
  if (ion1 !== null) {
    latRows.push(latRow(`1 stage, idle (${PROBES} events one at a time)`, ion1.idle, 1));
    latRows.push(
      latRow(`1 stage, burst (${ion1.events} at once, includes queueing)`, ion1.burst, 1),
    );
  }
  console.log(table(latRows));

  console.log('\n## Memory and CPU\n');
  const cpuRows = [
    [
      'run',
      'peak RSS (sampled 50 ms)',
      'Node CPU ms / run',
      '… of which spawn() (sync)',
      'children CPU ms / run',
      'machine busy',
      'event loop busy',
    ],
  ];
  const cpuRow = (label: string, rss: string, c: CpuUse, elu: string): string[] => [
    label,
    rss,
    f(c.selfMsPerRun, 2),
    f(c.spawnMsPerRun, 2),
    f(c.childMsPerRun, 2),
    `${f(c.machineBusy * 100, 0)}%`,
    elu,
  ];
  cpuRows.push(
    cpuRow(
      `baseline c${base.concurrency} (3 scripts)`,
      `(${f(base.cpu.rssMb)} MB at end)`,
      base.cpu,
      '-',
    ),
  );
  if (baseAtPeak !== base)
    cpuRows.push(
      cpuRow(
        `baseline c${baseAtPeak.concurrency} (3 scripts)`,
        `(${f(baseAtPeak.cpu.rssMb)} MB at end)`,
        baseAtPeak.cpu,
        '-',
      ),
    );
  cpuRows.push(
    cpuRow('Ion 3 stages', `${f(ion3.peakRssMb)} MB`, ion3.cpu, `${f(ion3.elu * 100, 0)}%`),
  );
  if (base1 !== null)
    cpuRows.push(
      cpuRow(
        `baseline c${base1.concurrency} (1 script)`,
        `(${f(base1.cpu.rssMb)} MB at end)`,
        base1.cpu,
        '-',
      ),
    );
  if (ion1 !== null)
    cpuRows.push(
      cpuRow('Ion 1 stage', `${f(ion1.peakRssMb)} MB`, ion1.cpu, `${f(ion1.elu * 100, 0)}%`),
    );
  console.log(table(cpuRows));
  console.log(
    `process.resourceUsage().maxRSS (whole bench process): ${f(process.resourceUsage().maxRSS / 1024)} MB`,
  );

  console.log('\n## Where Ion spends a job (3-stage burst, per job)\n');
  const perJob = ion3.jobs;
  const whereRows = [
    ['part', 'ms / job', 'calls / job'],
    [
      'executor.run wall time (spawn → exit → log closed; module runtime included)',
      f(ion3.execWallMsPerJob, 2),
      '1',
    ],
    ['blobs.putFile wall time (attempt log + outputs)', f(ion3.putFileMsPerJob, 2), '-'],
  ];
  const sqlRows = [...ion3.sql.entries()].sort((a, b) => b[1].ms - a[1].ms);
  let sqlTotal = 0;
  for (const [action, { ms, count }] of sqlRows) {
    sqlTotal += ms;
    whereRows.push([
      `SQLite (main thread, blocking) ${action}`,
      f(ms / perJob, 2),
      f(count / perJob, 2),
    ]);
  }
  whereRows.push(['SQLite total (blocking the event loop)', f(sqlTotal / perJob, 2), '-']);
  console.log(table(whereRows));
  console.log(`\nbench finished in ${f((performance.now() - started) / 1000)} s`);
}

/** `BENCH_SUITE` picks what `npm run bench` runs: the default bench, `backends`, `large` or `replay`. */
async function entry(): Promise<void> {
  const suite = process.env.BENCH_SUITE ?? 'default';
  if (suite === 'default' || suite === '') return main();
  if (suite === 'backends') return (await import('./backends.js')).runBackendsSuite();
  if (suite === 'large') return (await import('./large.js')).runLargeSuite();
  if (suite === 'replay') return (await import('./replay.js')).runReplaySuite();
  if (suite === 'warm') return (await import('./warm.js')).runWarmSuite();
  if (suite === 'containers') return (await import('./containers.js')).runContainersSuite();
  if (suite === 'ui') return (await import('./ui.js')).runUiSuite();
  if (suite === 'video') return (await import('./video.js')).runVideoSuite();
  if (suite === 'tracing') return (await import('./tracing.js')).runTracingSuite();
  if (suite === 'warm-container')
    return (await import('./warm-container.js')).runWarmContainerSuite();
  throw new Error(
    `unknown BENCH_SUITE "${suite}": use default, backends, large, replay, warm, warm-container, containers, ui, video or tracing`,
  );
}

entry().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
