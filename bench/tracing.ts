/**
 * `BENCH_SUITE=tracing npm run bench`: what tracing costs. The same three-stage pipeline of
 * trivial `sh` modules (the default bench's) runs on the embedded defaults through an
 * in-process IonApp, with tracing off (no SDK loaded) and on (every span exported over
 * OTLP/HTTP to a receiver on loopback, in a child process of its own as a collector would
 * be), alternating off/on rounds in one run so drift on a shared machine hits both alike.
 * Prints each round, then the throughput with tracing on as a ratio of off.
 *
 * Environment:
 *   BENCH_EVENTS        root events per round (default 200; 3 jobs each)
 *   BENCH_CONCURRENCY   every module's concurrency (default 4)
 *   BENCH_ROUNDS        rounds of each mode (default 3)
 *
 * Nothing is written into the repository: data lives in mkdtemp dirs, removed at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { IonApp } from '../src/app/ion-app.js';
import { createLogger } from '../src/app/logger.js';
import { loadConfig } from '../src/config/config.js';
import { startTelemetry } from '../src/telemetry/telemetry.js';
import { threeStagePipeline } from './pipelines.js';
import { f, intEnv, loadAverage, table } from './util.js';

const N = intEnv('BENCH_EVENTS', 200);
const CONCURRENCY = intEnv('BENCH_CONCURRENCY', 4);
const ROUNDS = intEnv('BENCH_ROUNDS', 3);
const WARMUP = 5;
const DEADLINE_MS = 300_000;

const START = `printf '[{"key":"n","value":"1"}]' > out/insights.json`;
const pipeline = (): unknown => threeStagePipeline(START, CONCURRENCY);

/**
 * An OTLP/HTTP receiver in a child process: answers every POST /v1/traces with 200 and counts
 * requests and bytes, which it prints when asked (SIGUSR2) and at exit.
 */
const RECEIVER = `
const http = require('node:http');
let requests = 0, bytes = 0;
const server = http.createServer((req, res) => {
  req.on('data', (c) => { bytes += c.length; });
  req.on('end', () => { requests += 1; res.writeHead(200, { 'content-type': 'application/json' }); res.end('{}'); });
});
server.listen(0, '127.0.0.1', () => console.log('port ' + server.address().port));
process.on('SIGUSR2', () => console.log('count ' + requests + ' ' + bytes));
process.on('SIGTERM', () => process.exit(0));
`;

interface Receiver {
  url: string;
  proc: ChildProcess;
  count(): Promise<{ requests: number; bytes: number }>;
}

async function startReceiver(): Promise<Receiver> {
  const proc = spawn(process.execPath, ['-e', RECEIVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const waiters: ((line: string) => void)[] = [];
  proc.stdout.on('data', (c: Buffer) => {
    out += c.toString();
    let nl: number;
    while ((nl = out.indexOf('\n')) >= 0) {
      const line = out.slice(0, nl);
      out = out.slice(nl + 1);
      waiters.shift()?.(line);
    }
  });
  const next = (): Promise<string> => new Promise((resolve) => waiters.push(resolve));
  const port = (await next()).split(' ')[1];
  return {
    url: `http://127.0.0.1:${port}`,
    proc,
    async count() {
      const line = next();
      proc.kill('SIGUSR2');
      const [, requests, bytes] = (await line).split(' ');
      return { requests: Number(requests), bytes: Number(bytes) };
    },
  };
}

interface Round {
  mode: 'off' | 'on';
  jobs: number;
  seconds: number;
  jobsPerSec: number;
  cpuMsPerJob: number;
}

/** One round in a fresh IonApp: warm-up, then N roots at once, timed until all 3N jobs succeeded. */
async function round(mode: 'off' | 'on', receiver: Receiver): Promise<Round> {
  const dir = await mkdtemp(join(tmpdir(), 'ion-bench-tracing-'));
  const logger = createLogger('silent');
  const env: Record<string, string> =
    mode === 'on'
      ? { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, OTEL_SERVICE_NAME: 'ion-bench' }
      : {};
  const telemetry = await startTelemetry(env, logger);
  if (telemetry.tracing.enabled !== (mode === 'on')) throw new Error(`tracing is not ${mode}`);
  const config = loadConfig({ flags: { dataDir: dir, logLevel: 'silent' } });
  const app = await IonApp.create(
    config,
    logger,
    { api: false, relay: true, workers: true },
    {},
    { telemetry },
  );
  let succeeded = 0;
  const failed: string[] = [];
  let wake: (() => void) | null = null;
  app.control.observe({
    attemptFinished(info) {
      if (info.outcome === 'succeeded') succeeded += 1;
      else failed.push(info.outcome);
      wake?.();
    },
  });
  const until = (count: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timed out at ${succeeded}/${count} jobs`)),
        DEADLINE_MS,
      );
      wake = () => {
        if (failed.length > 0) {
          clearTimeout(timer);
          reject(new Error(`a bench job ended ${failed[0]}`));
        } else if (succeeded >= count) {
          clearTimeout(timer);
          wake = null;
          resolve();
        }
      };
      wake();
    });
  try {
    await app.start();
    await app.control.applyPipeline(pipeline());
    for (let i = 0; i < WARMUP; i++) {
      await app.control.publish({ type: 'bench.start' });
      await until(3 * (i + 1));
    }
    const base = succeeded;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (let i = 0; i < N; i++) await app.control.publish({ type: 'bench.start' });
    await until(base + 3 * N);
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const jobs = 3 * N;
    return {
      mode,
      jobs,
      seconds,
      jobsPerSec: jobs / seconds,
      cpuMsPerJob: (cpu.user + cpu.system) / 1000 / jobs,
    };
  } finally {
    await app.stop(); // flushes the last spans when on
    await rm(dir, { recursive: true, force: true });
  }
}

export async function runTracingSuite(): Promise<void> {
  console.log(
    `tracing bench: ${N} roots x 3 stages per round, concurrency ${CONCURRENCY}, ${ROUNDS} rounds each, ` +
      `${cpus().length} cores, load ${loadAverage()}`,
  );
  const receiver = await startReceiver();
  const rounds: Round[] = [];
  try {
    for (let r = 0; r < ROUNDS; r++) {
      // Alternate which mode goes first, so neither always runs on a warmer machine.
      for (const mode of r % 2 === 0 ? (['off', 'on'] as const) : (['on', 'off'] as const)) {
        const result = await round(mode, receiver);
        rounds.push(result);
        console.log(
          `round ${r + 1} ${mode}: ${f(result.jobsPerSec)} jobs/s (${f(result.seconds, 2)} s), ${f(result.cpuMsPerJob, 2)} ms CPU per job in the Ion process`,
        );
      }
    }
    const exported = await receiver.count();
    const stat = (mode: 'off' | 'on') => {
      const of = rounds.filter((x) => x.mode === mode);
      const jobs = of.reduce((a, x) => a + x.jobs, 0);
      const seconds = of.reduce((a, x) => a + x.seconds, 0);
      const cpu = of.reduce((a, x) => a + x.cpuMsPerJob * x.jobs, 0) / jobs;
      const best = Math.max(...of.map((x) => x.jobsPerSec));
      return { jobsPerSec: jobs / seconds, best, cpu };
    };
    const off = stat('off');
    const on = stat('on');
    console.log('');
    console.log(
      table([
        ['tracing', 'jobs/s (all rounds)', 'best round jobs/s', 'Ion CPU ms/job'],
        ['off', f(off.jobsPerSec), f(off.best), f(off.cpu, 2)],
        ['on (OTLP/HTTP to loopback)', f(on.jobsPerSec), f(on.best), f(on.cpu, 2)],
      ]),
    );
    console.log(
      `\nthroughput with tracing on / off: ${f(on.jobsPerSec / off.jobsPerSec, 3)} ` +
        `(${f((1 - on.jobsPerSec / off.jobsPerSec) * 100)}% lower when positive); best rounds ${f(on.best / off.best, 3)}`,
    );
    console.log(
      `exported: ${exported.requests} OTLP requests, ${f(exported.bytes / 1024 / 1024, 2)} MiB ` +
        `(${f(exported.bytes / rounds.filter((x) => x.mode === 'on').reduce((a, x) => a + x.jobs, 0))} bytes per job incl. warm-up)`,
    );
  } finally {
    receiver.proc.kill('SIGTERM');
  }
}
