/**
 * `BENCH_SUITE=warm-container npm run bench` (or `npx tsx bench/warm-container.ts`): a warm
 * module in long-lived containers against the same module in a cold container per job, on
 * one engine, in one run (issue 10 item 5).
 *
 * It drives the docker job host directly (prepare, module, collect of each attempt; no bus
 * or store), so the figures are the executor's: per job, the host's `run` (prepare →
 * module → collect) wall time, and the time from that call to the module's function
 * starting (`started_ns`, wall clock in the container). The module is Python with the SDK
 * (it runs cold when started without a control channel), in the runtime image; it sleeps
 * BENCH_LOAD_MS (default 0) at start-up, a stand-in for loading a model.
 *
 * Environment: DOCKER_HOST (default unix:///var/run/docker.sock), BENCH_JOBS (default 40),
 * BENCH_CONCURRENCY (default 2), BENCH_LOAD_MS (default 0, and 300 in a second pass).
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { FsBlobStore } from '../src/blob/fs/fs-blob-store.js';
import type { ModuleRecord } from '../src/core/types.js';
import { DirJobHost } from '../src/executors/dir-job-host.js';
import { DockerExecutor } from '../src/executors/docker/docker-executor.js';
import { warmContainerExecutor } from '../src/executors/docker/warm-container-executor.js';
import { f, intEnv, loadAverage, nsToMs, percentile, table, wallMs } from './util.js';

const JOBS = intEnv('BENCH_JOBS', 40);
const CONCURRENCY = intEnv('BENCH_CONCURRENCY', 2);
const HOST = process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock';
const IMAGE = 'ion/runtime:local';
const SDK = resolve(import.meta.dirname, '../sdk');
const LOADS =
  process.env.BENCH_LOAD_MS === undefined ? [0, 300] : [Number(process.env.BENCH_LOAD_MS)];

const MODULE = `import os, sys, time
if os.environ.get("LOAD_MS", "0") != "0":
    time.sleep(int(os.environ["LOAD_MS"]) / 1000)  # loading a model
sys.path.insert(0, ${JSON.stringify(join(SDK, 'python'))})
from ion_warm import serve

def main():
    with open("out/insights.json", "w") as f:
        f.write('[{"key":"started_ns","value":"%d"}]' % time.time_ns())
    return 0

serve(main)
`;

interface Figures {
  jobsPerSec: number;
  runP50: number;
  startP50: number;
}

async function measure(
  warm: boolean,
  loadMs: number,
  root: string,
  script: string,
): Promise<Figures> {
  const dataDir = await mkdtemp(join(root, warm ? 'warm-' : 'cold-'));
  const logger = pino({ level: 'silent' });
  const blobs = new FsBlobStore({ dir: join(dataDir, 'blobs') });
  await blobs.start();
  const host = new DirJobHost({
    kind: 'docker',
    executor: new DockerExecutor({ host: HOST, runtimeImage: IMAGE, runtimeMounts: [SDK] }),
    ...(warm
      ? {
          warmExecutor: warmContainerExecutor({
            host: HOST,
            runtimeImage: IMAGE,
            runtimeMounts: [SDK],
            homeDir: dataDir,
            logger,
          }),
        }
      : {}),
    blobs,
    dataDir,
    keepJobDirs: false,
    logger,
  });
  await host.start();
  const now = new Date().toISOString();
  const module: ModuleRecord = {
    name: 'bench',
    subscribes: ['t.in'],
    publishes: [],
    run: { command: ['python3', script] },
    retries: 0,
    timeoutMs: 120_000,
    concurrency: CONCURRENCY,
    env: { LOAD_MS: String(loadMs) },
    version: 1,
    paused: false,
    executor: 'docker',
    ...(warm ? { warm: { maxJobs: 1_000_000, idleTimeoutMs: 600_000 } } : {}),
    createdAt: now,
    updatedAt: now,
  };
  const runs: number[] = [];
  const starts: number[] = [];
  const once = async (): Promise<void> => {
    const jobId = `bench-${randomUUID()}`;
    const at = wallMs();
    const t0 = performance.now();
    const result = await host.run({
      jobId,
      attempt: 1,
      module,
      event: {
        eventId: randomUUID(),
        type: 't.in',
        correlationId: randomUUID(),
        parentEventId: null,
        source: 'api',
        sourceJobId: null,
        data: [],
        files: [],
        createdAt: now,
      },
      baseEnv: { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8' },
      logFile: join(dataDir, 'logs', `${jobId}.log`),
      signal: new AbortController().signal,
    });
    runs.push(performance.now() - t0);
    const started = result.collected?.insights.find((i) => i.key === 'started_ns');
    if (started === undefined)
      throw new Error(`a bench job failed: ${JSON.stringify(result.execution ?? result.failure)}`);
    starts.push(nsToMs(started.value) - at);
  };
  try {
    // Warm-up: the slots start (and the image is in the page cache) before the clock runs.
    await Promise.all(Array.from({ length: CONCURRENCY }, once));
    runs.length = 0;
    starts.length = 0;
    let left = JOBS;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (left-- > 0) await once();
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    return {
      jobsPerSec: JOBS / seconds,
      runP50: percentile(runs, 50),
      startP50: percentile(starts, 50),
    };
  } finally {
    await host.close();
    await blobs.close();
  }
}

export async function runWarmContainerSuite(): Promise<void> {
  const root = await mkdtemp(join(tmpdir(), 'ion-bench-warm-container-'));
  try {
    const script = join(root, 'bench-module.py');
    await writeFile(script, MODULE);
    const rows = [['module', 'executor', 'jobs/s', 'job p50 ms', 'call→start p50 ms', 'warm/cold']];
    for (const loadMs of LOADS) {
      const cold = await measure(false, loadMs, root, script);
      const warm = await measure(true, loadMs, root, script);
      const label = loadMs === 0 ? 'trivial' : `loads ${loadMs} ms`;
      rows.push([
        label,
        'cold container',
        f(cold.jobsPerSec),
        f(cold.runP50),
        f(cold.startP50),
        '',
      ]);
      rows.push([
        label,
        'warm container',
        f(warm.jobsPerSec),
        f(warm.runP50),
        f(warm.startP50),
        `${f(warm.jobsPerSec / cold.jobsPerSec)}x`,
      ]);
    }
    console.log(
      `\nWarm vs cold containers on ${HOST}: ${JOBS} jobs, ${CONCURRENCY} at once (load ${loadAverage()})\n`,
    );
    console.log(table(rows));
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === resolve(import.meta.filename))
  await runWarmContainerSuite();
