/**
 * `BENCH_SUITE=replay npm run bench`: replay/backfill throughput on the embedded defaults
 * (SQLite bus + SQLite store + fs blobs), through an in-process IonApp, against ordinary
 * processing of the same events measured in the same run. See docs/benchmarks.md ("Replay
 * and backfill").
 *
 * One trivial module (`sh -c` writing one insight) subscribes to `bench.replay`. Per size:
 *   1. baseline: publish N root events at once, time until their N jobs succeeded;
 *   2. backfill: `control.replay({ module, type, since })` over exactly those N events: the
 *      request's own time (events enumerated and jobs created), then the time from the request
 *      until all N replay jobs succeeded;
 *   3. baseline after: N more root events as in 1, to tell drift (a bigger process and
 *      store) from what the replay itself costs.
 * The scaling run repeats both with N × BENCH_REPLAY_SCALE events in a fresh IonApp. Then,
 * per size of BENCH_REPLAY_REQUEST, the request alone on a larger history: E events seeded
 * before the module exists, a dry run (enumeration only), then the real request with its
 * store calls timed per page and the time until this process's timers ran again (the
 * request and the relay's drain of its outbox rows run as one chain of microtasks).
 *
 * Environment:
 *   BENCH_EVENTS          root events of the first size (default 500)
 *   BENCH_CONCURRENCY     the module's concurrency (default 4)
 *   BENCH_REPLAY_SCALE    factor of the scaling run (default 4; 1 skips it)
 *   BENCH_REPLAY_REQUEST  comma list of history sizes for the request-only run (default
 *                         20000; 0 skips it; 100000 takes ~30 s more)
 *
 * Completion is waited for by polling a read-only connection to the store's file
 * (covering-index counts every 20 ms) with a deadline. SQLite time is measured by wrapping both
 * adapters' private driver helpers from outside; src/ is untouched.
 */
import type { JobRequest } from '../src/executors/job-host.js';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { IonApp } from '../src/app/ion-app.js';
import { createLogger } from '../src/app/logger.js';
import { loadConfig } from '../src/config/config.js';
import {
  f,
  instrumentSqlite,
  intEnv,
  loadAverage,
  localHost,
  RssSampler,
  table,
  wallMs,
  type SqlTimes,
} from './util.js';

const N = intEnv('BENCH_EVENTS', 500);
const CONCURRENCY = intEnv('BENCH_CONCURRENCY', 4);
const SCALE = intEnv('BENCH_REPLAY_SCALE', 4);
const REQUEST_SIZES = (process.env.BENCH_REPLAY_REQUEST ?? '20000')
  .split(',')
  .map((v) => v.trim())
  .filter((v) => v !== '' && v !== '0')
  .map((v) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1)
      throw new Error(`BENCH_REPLAY_REQUEST must list positive integers, got "${v}"`);
    return n;
  });
/** Events run one at a time before the measured phases (outside the replay's time range). */
const WARMUP = 10;
const POLL_MS = 20;
/** Per phase; generous because the machine is shared (2 cores, other test suites). */
const DEADLINE_MS_PER_JOB = 500;
const MODULE = 'replayed';
const TYPE = 'bench.replay';
/** Events of the request-only run: seeded while no module subscribes to them. */
const SEED_TYPE = 'bench.history';
const SCRIPT = `printf '[{"key":"n","value":"1"}]' > out/insights.json`;

function pipeline(type = TYPE): unknown {
  return {
    modules: [
      {
        name: MODULE,
        subscribes: [type],
        publishes: [],
        run: { command: ['sh', '-c', SCRIPT] },
        retries: 0,
        timeout: '60s',
        concurrency: CONCURRENCY,
      },
    ],
  };
}

// -- measurement helpers ----------------------------------------------------------------------

/** CPU seconds of this process and of its waited-for children (cutime + cstime). */
function cpuSeconds(): { self: number; children: number } {
  const usage = process.cpuUsage();
  const stat = readFileSync('/proc/self/stat', 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return {
    self: (usage.user + usage.system) / 1e6,
    children: (Number(fields[13]) + Number(fields[14])) / 100,
  };
}

/**
 * Resolves with the ms from `t0` (wall clock) at which a timer set now first runs: how long
 * this process served no timers and no I/O (child exits, sockets) from now on.
 */
function timersBlockedMs(t0: number): Promise<number> {
  return new Promise((resolve) => setTimeout(() => resolve(wallMs() - t0), 0));
}

/** Times each call of an async store method while installed; `restore()` puts it back. */
function timeCalls<K extends 'listEvents' | 'addReplayJobs'>(
  store: IonApp['backends']['store'],
  method: K,
): { ms: number[]; restore(): void } {
  const original = store[method];
  const ms: number[] = [];
  const bound = (original as (...args: unknown[]) => Promise<unknown>).bind(store);
  (store as unknown as Record<K, unknown>)[method] = async (...args: unknown[]) => {
    const t = performance.now();
    try {
      return await bound(...args);
    } finally {
      ms.push(performance.now() - t);
    }
  };
  return {
    ms,
    restore: () => {
      store[method] = original;
    },
  };
}

const sum = (v: number[]): number => v.reduce((a, b) => a + b, 0);
const mean = (v: number[]): number => (v.length === 0 ? NaN : sum(v) / v.length);

/** Module processes in flight (executor.run), integrated over time for the mean parallelism. */
interface Parallelism {
  reset(): void;
  /** Mean processes in flight since the last reset, and the peak. */
  read(): { mean: number; peak: number };
}

async function instrumentExecutor(app: IonApp): Promise<Parallelism> {
  let inflight = 0;
  let peak = 0;
  let integral = 0;
  let since = performance.now();
  let last = since;
  const tick = (delta: number): void => {
    const now = performance.now();
    integral += inflight * (now - last);
    last = now;
    inflight += delta;
    peak = Math.max(peak, inflight);
  };
  const executor = await localHost(app);
  const run = executor.run.bind(executor);
  executor.run = async (spec: JobRequest) => {
    tick(1);
    try {
      return await run(spec);
    } finally {
      tick(-1);
    }
  };
  return {
    reset() {
      tick(0);
      integral = 0;
      peak = inflight;
      since = last;
    },
    read() {
      tick(0);
      return { mean: integral / Math.max(1, last - since), peak };
    },
  };
}

/** Sums each SQLite action's blocking time (see instrumentSqlite). */
function instrumentSql(app: IonApp): SqlTimes {
  const times: SqlTimes = new Map();
  instrumentSqlite(app.backends, times);
  return times;
}

interface Phase {
  jobs: number;
  /** From the first publish (or the replay request) to the last job's `finished_at`, s. */
  seconds: number;
  jobsPerSec: number;
  /** Publishing the N roots (baseline) or the replay request (backfill), ms. */
  submitMs: number;
  /** Submission → the first timer set at submission ran (no timers or I/O before), ms. */
  timersBlockedMs: number;
  /** Submission → first job of the phase started (attempt `started_at`), ms. */
  firstStartMs: number;
  /** Submission → last outbox row of the phase published to the bus, ms. */
  outboxDrainedMs: number;
  cpuSelfMsPerJob: number;
  cpuChildMsPerJob: number;
  /** Module processes in flight over the phase: mean and peak. */
  meanParallel: number;
  peakParallel: number;
  startRssMb: number;
  peakRssMb: number;
  elu: number;
  sql: SqlTimes;
}

interface SizeResult {
  events: number;
  baseline: Phase;
  backfill: Phase;
  /** The same burst as `baseline`, run after the backfill. */
  after: Phase;
  /** Blocking time of the request's store calls, ms. */
  requestParts: { listEventsMs: number; pages: number; addJobsMs: number };
}

async function runSize(events: number): Promise<SizeResult> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ion-bench-replay-'));
  const config = loadConfig({ flags: { dataDir, logLevel: 'silent' } });
  const app = await IonApp.create(
    config,
    createLogger('silent'),
    { api: false, relay: true, workers: true },
    process.env,
  );
  const sql = instrumentSql(app);
  const parallel = await instrumentExecutor(app);
  const rss = new RssSampler(50);
  let reader: Database.Database | undefined;
  try {
    await app.start();
    await app.control.applyPipeline(pipeline());
    reader = new Database(join(dataDir, 'store.db'), { readonly: true });
    const db = reader;
    // Succeeded jobs, ordinary or one replay's. Covering-index counts only: the poll runs on
    // this thread, so it must stay cheap as the table grows.
    const countModule = db
      .prepare(`SELECT count(*) FROM jobs WHERE module = ? AND state = 'succeeded'`)
      .pluck();
    const countReplays = db
      .prepare(`SELECT count(*) FROM jobs WHERE replay_id IS NOT NULL AND state = 'succeeded'`)
      .pluck();
    const countReplay = db
      .prepare(`SELECT count(*) FROM jobs WHERE replay_id = ? AND state = 'succeeded'`)
      .pluck();
    const countBad = db
      .prepare(
        `SELECT count(*) FROM jobs WHERE module = ? AND state IN ('failed', 'dead_lettered', 'cancelled')`,
      )
      .pluck();
    const succeeded = (replay: string | null): number =>
      replay === null
        ? (countModule.get(MODULE) as number) - (countReplays.get() as number)
        : (countReplay.get(replay) as number);
    /** Waits until `target` jobs (ordinary ones, or the replay's) have succeeded in all. */
    const waitFor = async (replay: string | null, target: number): Promise<void> => {
      const deadline = performance.now() + 30_000 + target * DEADLINE_MS_PER_JOB;
      while (succeeded(replay) < target) {
        if ((countBad.get(MODULE) as number) > 0)
          throw new Error(`a bench job failed; see ${dataDir}`);
        if (performance.now() > deadline)
          throw new Error(`timed out: ${succeeded(replay)}/${target} jobs succeeded`);
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
    };
    /** Wall-clock marks of a finished phase, read from the store. */
    const marks = (
      replay: string | null,
      createdSince: string,
    ): { lastFinished: number; firstStarted: number; outboxDrained: number } => {
      const row = db
        .prepare(
          `SELECT max(j.finished_at) AS last, min(a.started_at) AS first
           FROM jobs j JOIN attempts a ON a.job_id = j.job_id
           WHERE j.module = @module AND j.replay_id IS @replay AND j.created_at >= @since`,
        )
        .get({ module: MODULE, replay, since: createdSince }) as { last: string; first: string };
      // Root events' rows have no subscription; a replay's rows carry its job ids.
      const drained = (
        replay === null
          ? db
              .prepare(
                'SELECT max(published_at) FROM outbox WHERE subscription IS NULL AND created_at >= ?',
              )
              .pluck()
              .get(createdSince)
          : db
              .prepare(
                'SELECT max(o.published_at) FROM outbox o JOIN jobs j ON j.job_id = o.job_id WHERE j.replay_id = ?',
              )
              .pluck()
              .get(replay)
      ) as string;
      return {
        lastFinished: Date.parse(row.last),
        firstStarted: Date.parse(row.first),
        outboxDrained: Date.parse(drained),
      };
    };
    /**
     * One measured phase: `submit` publishes or replays and returns the replay id (null for
     * ordinary jobs); the phase ends when `jobs` more jobs of that kind have succeeded.
     */
    const phase = async (submit: () => Promise<string | null>, jobs: number): Promise<Phase> => {
      const before = succeeded(null);
      sql.clear();
      parallel.reset();
      const startRss = rss.reset();
      const cpu0 = cpuSeconds();
      const elu0 = performance.eventLoopUtilization();
      const sinceIso = new Date().toISOString();
      const t0 = wallMs();
      const blocked = timersBlockedMs(t0);
      const replayId = await submit();
      const submitMs = wallMs() - t0;
      await waitFor(replayId, replayId === null ? before + jobs : jobs);
      const par = parallel.read();
      const cpu1 = cpuSeconds();
      const elu = performance.eventLoopUtilization(elu0).utilization;
      const m = marks(replayId, sinceIso);
      const seconds = (m.lastFinished - t0) / 1000;
      return {
        jobs,
        seconds,
        jobsPerSec: jobs / seconds,
        submitMs,
        timersBlockedMs: await blocked,
        firstStartMs: m.firstStarted - t0,
        outboxDrainedMs: m.outboxDrained - t0,
        cpuSelfMsPerJob: ((cpu1.self - cpu0.self) * 1000) / jobs,
        cpuChildMsPerJob: ((cpu1.children - cpu0.children) * 1000) / jobs,
        meanParallel: par.mean,
        peakParallel: par.peak,
        startRssMb: startRss / 1024 / 1024,
        peakRssMb: rss.peak() / 1024 / 1024,
        elu,
        sql: new Map(sql),
      };
    };

    // Warm-up, one event at a time; created before `since`, so the replay does not see them.
    for (let i = 0; i < WARMUP; i++) {
      await app.control.publish({ type: TYPE, data: { warmup: String(i) } });
      await waitFor(null, i + 1);
    }

    const publishBurst = async (): Promise<string> => {
      let first = '';
      for (let i = 0; i < events; i++) {
        const { event } = await app.control.publish({ type: TYPE, data: { i: String(i) } });
        if (i === 0) first = event.createdAt;
      }
      return first;
    };

    // 1. Baseline: N root events published at once, processed as they arrive.
    let since = '';
    const baseline = await phase(async () => {
      since = await publishBurst();
      return null;
    }, events);

    // 2. Backfill over exactly those N events; the request's store calls are timed.
    const store = app.backends.store;
    const list = timeCalls(store, 'listEvents');
    const add = timeCalls(store, 'addReplayJobs');
    const backfill = await phase(async () => {
      const outcome = await app.control.replay({ module: MODULE, type: TYPE, since });
      if (outcome.matched !== events)
        throw new Error(`the replay matched ${outcome.matched} events, expected ${events}`);
      return outcome.replay.replayId;
    }, events);
    list.restore();
    add.restore();

    // 3. The baseline again, after the backfill: the process and the store have grown since
    // the first one, so this brackets how much of a difference is drift, not replay.
    const after = await phase(async () => {
      await publishBurst();
      return null;
    }, events);
    return {
      events,
      baseline,
      backfill,
      after,
      requestParts: { listEventsMs: sum(list.ms), pages: list.ms.length, addJobsMs: sum(add.ms) },
    };
  } finally {
    reader?.close();
    rss.stop();
    await app.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

interface RequestResult {
  events: number;
  seedSeconds: number;
  dryRunMs: number;
  requestMs: number;
  timersBlockedMs: number;
  pages: number;
  /** listEvents / addReplayJobs ms per page: mean over the first and the last fifth of pages. */
  listFirst: number;
  listLast: number;
  listTotal: number;
  addFirst: number;
  addLast: number;
  addTotal: number;
}

/**
 * The request alone on a history of `events` events: seeded while no module subscribes (so
 * no jobs run), then the module is applied, a dry run enumerates them, and the real request
 * creates the jobs. Workers are off, so nothing but the request and the relay's drain of its
 * outbox rows runs; the jobs are left pending and dropped with the temp dir.
 */
async function runRequestOnly(events: number): Promise<RequestResult> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ion-bench-replay-req-'));
  const config = loadConfig({ flags: { dataDir, logLevel: 'silent' } });
  const app = await IonApp.create(
    config,
    createLogger('silent'),
    { api: false, relay: true, workers: false },
    process.env,
  );
  try {
    await app.start();
    const seedStart = performance.now();
    let since = '';
    for (let i = 0; i < events; i++) {
      const { event } = await app.control.publish({ type: SEED_TYPE, data: { i: String(i) } });
      if (i === 0) since = event.createdAt;
      // Let the relay and timers run now and then, as separate API requests would.
      if (i % 1000 === 999) await new Promise((r) => setImmediate(r));
    }
    const seedSeconds = (performance.now() - seedStart) / 1000;
    await app.control.applyPipeline(pipeline(SEED_TYPE));
    const request = { module: MODULE, type: SEED_TYPE, since };

    const d0 = performance.now();
    const dry = await app.control.replay({ ...request, dryRun: true });
    const dryRunMs = performance.now() - d0;
    if (dry.matched !== events)
      throw new Error(`the dry run matched ${dry.matched} events, expected ${events}`);

    const store = app.backends.store;
    const list = timeCalls(store, 'listEvents');
    const add = timeCalls(store, 'addReplayJobs');
    const t0 = wallMs();
    const blocked = timersBlockedMs(t0);
    const outcome = await app.control.replay(request);
    const requestMs = wallMs() - t0;
    const timersBlocked = await blocked;
    list.restore();
    add.restore();
    if (outcome.matched !== events)
      throw new Error(`the replay matched ${outcome.matched} events, expected ${events}`);
    const fifth = (v: number[], last: boolean): number => {
      const k = Math.max(1, Math.floor(v.length / 5));
      return mean(last ? v.slice(-k) : v.slice(0, k));
    };
    return {
      events,
      seedSeconds,
      dryRunMs,
      requestMs,
      timersBlockedMs: timersBlocked,
      pages: list.ms.length,
      listFirst: fifth(list.ms, false),
      listLast: fifth(list.ms, true),
      listTotal: sum(list.ms),
      addFirst: fifth(add.ms, false),
      addLast: fifth(add.ms, true),
      addTotal: sum(add.ms),
    };
  } finally {
    await app.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

// -- output -------------------------------------------------------------------------------------

function sqlRows(label: string, p: Phase): string[][] {
  const rows: string[][] = [];
  let total = 0;
  for (const [action, { ms, count }] of [...p.sql.entries()].sort((a, b) => b[1].ms - a[1].ms)) {
    total += ms;
    if (ms / p.jobs < 0.05) continue;
    rows.push([label, action, f(ms / p.jobs, 2), f(count / p.jobs, 2)]);
  }
  rows.push([label, 'total (all actions)', f(total / p.jobs, 2), '-']);
  return rows;
}

export async function runReplaySuite(): Promise<void> {
  const started = performance.now();
  console.log(
    `Ion bench, replay/backfill: ${N} events` +
      (SCALE > 1 ? ` (then ${N * SCALE})` : '') +
      `, 1 module × concurrency ${CONCURRENCY}, embedded defaults, ${cpus().length} CPUs, ` +
      `Node ${process.version}, load average ${loadAverage()}`,
  );
  const sizes = SCALE > 1 ? [N, N * SCALE] : [N];
  const results: SizeResult[] = [];
  for (const events of sizes) {
    console.log(`- ${events} events …`);
    results.push(await runSize(events));
  }
  const requests: RequestResult[] = [];
  for (const events of REQUEST_SIZES) {
    console.log(`- request only, history of ${events} events …`);
    requests.push(await runRequestOnly(events));
  }

  console.log(
    '\n## Throughput (ratio = jobs/s ÷ jobs/s of the baseline before, and after, in the same app)\n',
  );
  const rows = [
    [
      'run',
      'jobs',
      'seconds',
      'jobs/s',
      'ratio vs baseline',
      'ratio vs baseline after',
      'in flight mean / peak',
      'submit ms',
      'submit ÷ whole',
      'timers blocked ms',
      'first job started ms',
      'outbox drained ms',
    ],
  ];
  for (const r of results) {
    const row = (label: string, p: Phase): string[] => [
      label,
      String(p.jobs),
      f(p.seconds, 2),
      f(p.jobsPerSec),
      f(p.jobsPerSec / r.baseline.jobsPerSec, 2),
      f(p.jobsPerSec / r.after.jobsPerSec, 2),
      `${f(p.meanParallel, 2)} / ${p.peakParallel}`,
      f(p.submitMs, 0),
      f(p.submitMs / (p.seconds * 1000), 3),
      f(p.timersBlockedMs, 0),
      f(Math.max(0, p.firstStartMs), 0),
      f(p.outboxDrainedMs, 0),
    ];
    rows.push(row(`baseline: publish ${r.events} roots`, r.baseline));
    rows.push(row(`backfill: replay ${r.events} events`, r.backfill));
    rows.push(row(`baseline after: publish ${r.events} more`, r.after));
  }
  console.log(table(rows));

  console.log('\n## The replay request\n');
  const reqRows = [
    [
      'events',
      'request ms',
      'events enumerated + jobs created / s',
      'listEvents ms (pages)',
      'addReplayJobs ms',
      'ms / event',
    ],
  ];
  for (const r of results)
    reqRows.push([
      String(r.events),
      f(r.backfill.submitMs, 1),
      f(r.events / (r.backfill.submitMs / 1000), 0),
      `${f(r.requestParts.listEventsMs, 1)} (${r.requestParts.pages})`,
      f(r.requestParts.addJobsMs, 1),
      f(r.backfill.submitMs / r.events, 3),
    ]);
  console.log(table(reqRows));

  if (results.length > 1) {
    const [small, large] = [results[0]!, results[1]!];
    const perJob = (p: Phase): number => (p.seconds * 1000) / p.jobs;
    console.log(`\n## Scaling (${large.events} events against ${small.events})\n`);
    console.log(
      table([
        ['figure', `${small.events}`, `${large.events}`, 'ratio (1.00 = linear)'],
        [
          'backfill ms / job (request → last job)',
          f(perJob(small.backfill), 2),
          f(perJob(large.backfill), 2),
          f(perJob(large.backfill) / perJob(small.backfill), 2),
        ],
        [
          'baseline ms / job',
          f(perJob(small.baseline), 2),
          f(perJob(large.baseline), 2),
          f(perJob(large.baseline) / perJob(small.baseline), 2),
        ],
        [
          'backfill ÷ baseline ratio',
          f(small.backfill.jobsPerSec / small.baseline.jobsPerSec, 2),
          f(large.backfill.jobsPerSec / large.baseline.jobsPerSec, 2),
          f(
            large.backfill.jobsPerSec /
              large.baseline.jobsPerSec /
              (small.backfill.jobsPerSec / small.baseline.jobsPerSec),
            2,
          ),
        ],
        [
          'backfill ÷ baseline-after ratio',
          f(small.backfill.jobsPerSec / small.after.jobsPerSec, 2),
          f(large.backfill.jobsPerSec / large.after.jobsPerSec, 2),
          f(
            large.backfill.jobsPerSec /
              large.after.jobsPerSec /
              (small.backfill.jobsPerSec / small.after.jobsPerSec),
            2,
          ),
        ],
        [
          'request ms / event',
          f(small.backfill.submitMs / small.events, 3),
          f(large.backfill.submitMs / large.events, 3),
          f(large.backfill.submitMs / large.events / (small.backfill.submitMs / small.events), 2),
        ],
      ]),
    );
  }

  if (requests.length > 0) {
    console.log(
      '\n## The request on a larger history (workers off; seeded before the module existed)\n',
    );
    const rows = [
      [
        'events',
        'seeding s',
        'dry run ms',
        'request ms',
        'request ms / event',
        'timers blocked ms',
        'pages',
        'listEvents ms / page (first → last fifth)',
        'listEvents total ms',
        'addReplayJobs ms / page (first → last fifth)',
        'addReplayJobs total ms',
      ],
    ];
    for (const r of requests)
      rows.push([
        String(r.events),
        f(r.seedSeconds, 1),
        f(r.dryRunMs, 0),
        f(r.requestMs, 0),
        f(r.requestMs / r.events, 3),
        f(r.timersBlockedMs, 0),
        String(r.pages),
        `${f(r.listFirst, 1)} → ${f(r.listLast, 1)}`,
        f(r.listTotal, 0),
        `${f(r.addFirst, 1)} → ${f(r.addLast, 1)}`,
        f(r.addTotal, 0),
      ]);
    console.log(table(rows));
  }

  console.log('\n## Memory and CPU (per job)\n');
  const cpuRows = [
    [
      'run',
      'RSS at start',
      'peak RSS (sampled 50 ms)',
      'Node CPU ms / job',
      'children CPU ms / job',
      'event loop busy',
    ],
  ];
  for (const r of results)
    for (const [label, p] of [
      [`baseline ${r.events}`, r.baseline],
      [`backfill ${r.events}`, r.backfill],
      [`baseline after ${r.events}`, r.after],
    ] as const)
      cpuRows.push([
        label,
        `${f(p.startRssMb)} MB`,
        `${f(p.peakRssMb)} MB`,
        f(p.cpuSelfMsPerJob, 2),
        f(p.cpuChildMsPerJob, 2),
        `${f(p.elu * 100, 0)}%`,
      ]);
  console.log(table(cpuRows));
  console.log(
    `process.resourceUsage().maxRSS (whole bench process): ${f(process.resourceUsage().maxRSS / 1024)} MB`,
  );

  console.log(
    '\n## Where the main thread blocks in SQLite (ms / job, calls / job; actions ≥ 0.05 ms)\n',
  );
  const whereRows = [['run', 'action', 'ms / job', 'calls / job']];
  for (const r of results) {
    whereRows.push(...sqlRows(`baseline ${r.events}`, r.baseline));
    whereRows.push(...sqlRows(`backfill ${r.events}`, r.backfill));
  }
  console.log(table(whereRows));
  console.log(
    `\nbench finished in ${f((performance.now() - started) / 1000)} s, load average ${loadAverage()}`,
  );
}
