/**
 * `BENCH_SUITE=containers npm run bench`: the same trivial three-stage pipeline as local
 * processes and as containers (docker executor), beside a plain loop of `docker run --rm` of
 * the same image and module, all in one run (docs/benchmarks.md, "Containers").
 *
 * Environment: DOCKER_HOST (the engine: dockerd or podman's socket; default
 * unix:///var/run/docker.sock), BENCH_DOCKER_CLI (default `docker`; it talks to DOCKER_HOST),
 * BENCH_EVENTS (root events of the burst, default 30), BENCH_CONCURRENCY (default 4),
 * BENCH_PROBES (idle probes, default 10). The image is ion/runtime:local (`npm run images`).
 *
 * The module is one line of Python (/usr/bin/python3 on the host and in the image) that
 * records when it started (`started_ns`) and raises the next stage's event. Measured:
 *   1. the CLI loop: 3 x BENCH_EVENTS `docker run --rm --network none -v DIR:/ion` of the
 *      module, BENCH_CONCURRENCY at once (jobs/s), and BENCH_PROBES of them one at a time
 *      (spawn of the CLI → module start, p50: a container start through the CLI);
 *   2. the same loop on the bare Engine API (create, start, wait, remove through dockerode,
 *      no log read): the cheapest container start a program can have;
 *   3. Ion with processes, then with containers: idle publish → stage-1 start p50 (one root
 *      event at a time) and a burst of BENCH_EVENTS root events (jobs/s).
 * The per-job overhead of Ion's containers is their idle publish→start p50 minus the loops'.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import type Docker from 'dockerode';
import { IonApp } from '../src/app/ion-app.js';
import { createLogger } from '../src/app/logger.js';
import { loadConfig } from '../src/config/config.js';
import { dockerClient } from '../src/executors/docker/engine.js';
import { f, intEnv, loadAverage, nsToMs, percentile, table, wallMs } from './util.js';

const N = intEnv('BENCH_EVENTS', 30);
const CONCURRENCY = intEnv('BENCH_CONCURRENCY', 4);
const PROBES = intEnv('BENCH_PROBES', 10);
const HOST = process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock';
const CLI = process.env.BENCH_DOCKER_CLI ?? 'docker';
const IMAGE = 'ion/runtime:local';
const PYTHON = '/usr/bin/python3';
const DEADLINE_MS = 600_000;
const MODULE = `import os, time
open("out/insights.json", "w").write('[{"key":"started_ns","value":"%d"}]' % time.time_ns())
n = os.environ.get("NEXT")
if n: open("out/events/e.json", "w").write('[{"key":"eventType","value":"%s"}]' % n)`;

interface Run {
  jobsPerSec: number;
  startP50: number;
}

/** Starts one container of the module in `dir` and resolves when it has been removed. */
type OneContainer = (dir: string) => Promise<void>;

/** `docker run --rm` of the module through the CLI. */
const cliRun: OneContainer = async (dir) => {
  const args = ['run', '--rm', '--network', 'none', '-v', `${dir}:/ion`, '-w', '/ion'];
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn(CLI, [...args, '-e', 'NEXT=x', IMAGE, PYTHON, '-c', MODULE], {
      env: { ...process.env, DOCKER_HOST: HOST },
      stdio: 'ignore',
    });
    child.once('error', reject);
    child.once('exit', resolve);
  });
  if (code !== 0) throw new Error(`${CLI} run exited with ${code}`);
};

/**
 * The bare Engine API calls a container needs, with nothing of Ion around them: create (the
 * same mount, network and working directory), start, wait, remove. No log is read.
 */
function apiRun(docker: Docker): OneContainer {
  return async (dir) => {
    const container = await docker.createContainer({
      Image: IMAGE,
      Entrypoint: [PYTHON, '-c', MODULE],
      Cmd: [],
      Env: ['NEXT=x'],
      WorkingDir: '/ion',
      HostConfig: { NetworkMode: 'none', Binds: [`${dir}:/ion`] },
    });
    try {
      await container.start();
      const { StatusCode } = (await container.wait()) as { StatusCode: number };
      if (StatusCode !== 0) throw new Error(`the bare API container exited with ${StatusCode}`);
    } finally {
      await container.remove({ force: true });
    }
  };
}

/** A loop of one container per job, no Ion: a burst (jobs/s) and sequential probes (start latency). */
async function containerLoop(
  label: string,
  oneContainer: OneContainer,
  runs: number,
  probes: number,
): Promise<Run> {
  const root = await mkdtemp(join(tmpdir(), `ion-bench-${label}-`));
  const once = async (i: number): Promise<number> => {
    const dir = join(root, String(i));
    for (const d of ['in/data', 'out/data', 'out/events'])
      await mkdir(join(dir, d), { recursive: true });
    const at = wallMs();
    await oneContainer(dir);
    const insights = JSON.parse(await readFile(join(dir, 'out/insights.json'), 'utf8')) as {
      value: string;
    }[];
    await rm(dir, { recursive: true, force: true });
    return nsToMs(insights[0]!.value) - at;
  };
  const starts: number[] = [];
  for (let i = 0; i < probes; i++) starts.push(await once(i));
  let next = probes;
  const end = probes + runs;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < end) await once(next++);
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  await rm(root, { recursive: true, force: true });
  return { jobsPerSec: runs / seconds, startP50: percentile(starts, 50) };
}

/** The pipeline in a fresh in-process Ion on `executor`: idle probes, then a burst. */
async function runIon(executor: 'local' | 'docker'): Promise<Run> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ion-bench-containers-'));
  const config = loadConfig({
    flags: { dataDir, logLevel: 'silent', executor: { kind: executor, docker: { host: HOST } } },
  });
  const app = await IonApp.create(
    config,
    createLogger('silent'),
    { api: false, relay: true, workers: true },
    process.env,
  );
  await app.start();
  const stages = 3;
  const types = ['bench.c0', 'bench.c1', 'bench.c2', 'bench.c3'];
  await app.control.applyPipeline({
    modules: Array.from({ length: stages }, (_, i) => ({
      name: `stage${i + 1}`,
      subscribes: [types[i]],
      publishes: i + 1 < stages ? [types[i + 1]] : [],
      run: { command: [PYTHON, '-c', MODULE] },
      env: i + 1 < stages ? { NEXT: types[i + 1]! } : {},
      retries: 0,
      timeout: '120s',
      concurrency: CONCURRENCY,
    })),
  });
  const reader = new Database(join(dataDir, 'store.db'), { readonly: true });
  const done = reader.prepare("SELECT count(*) FROM jobs WHERE state = 'succeeded'").pluck();
  const bad = reader
    .prepare("SELECT count(*) FROM jobs WHERE state IN ('failed','dead_lettered')")
    .pluck();
  const startedNs = reader
    .prepare("SELECT value FROM insights WHERE event_id = ? AND key = 'started_ns'")
    .pluck();
  const waitJobs = async (target: number): Promise<void> => {
    const deadline = performance.now() + DEADLINE_MS;
    while ((done.get() as number) < target) {
      if ((bad.get() as number) > 0) throw new Error(`a bench job failed; see ${dataDir}`);
      if (performance.now() > deadline)
        throw new Error(`timed out at ${String(done.get())}/${target} jobs`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const starts: number[] = [];
  // One warm-up event (pulls nothing, but the first container start is slower), then probes.
  for (let i = 0; i <= PROBES; i++) {
    const at = wallMs();
    const { event } = await app.control.publish({ type: types[0]! });
    await waitJobs((i + 1) * stages);
    if (i > 0) starts.push(nsToMs(startedNs.get(event.eventId) as string) - at);
  }
  const t0 = performance.now();
  for (let i = 0; i < N; i++) await app.control.publish({ type: types[0]! });
  await waitJobs((PROBES + 1 + N) * stages);
  const seconds = (performance.now() - t0) / 1000;
  reader.close();
  await app.stop();
  await rm(dataDir, { recursive: true, force: true });
  return { jobsPerSec: (N * stages) / seconds, startP50: percentile(starts, 50) };
}

export async function runContainersSuite(): Promise<void> {
  const started = performance.now();
  console.log(
    `containers suite: ${N} events x 3 stages, concurrency ${CONCURRENCY}, ${PROBES} idle probes, engine ${HOST}; load ${loadAverage()}`,
  );
  const cli = await containerLoop('cli', cliRun, 3 * N, PROBES);
  const api = await containerLoop('api', apiRun(dockerClient(HOST)), 3 * N, PROBES);
  const processes = await runIon('local');
  const containers = await runIon('docker');
  console.log('\nThree-stage trivial pipeline (one line of Python per stage)');
  console.log(
    table([
      ['run', 'jobs/s', 'x CLI loop', 'idle start p50 ms'],
      [`${CLI} run --rm loop (no Ion)`, f(cli.jobsPerSec), '1.0', f(cli.startP50)],
      [
        'Engine API loop (create, start, wait, remove; no Ion)',
        f(api.jobsPerSec),
        f(api.jobsPerSec / cli.jobsPerSec, 2),
        f(api.startP50),
      ],
      [
        'Ion, local processes',
        f(processes.jobsPerSec),
        f(processes.jobsPerSec / cli.jobsPerSec, 2),
        f(processes.startP50),
      ],
      [
        'Ion, containers (docker executor)',
        f(containers.jobsPerSec),
        f(containers.jobsPerSec / cli.jobsPerSec, 2),
        f(containers.startP50),
      ],
    ]),
  );
  console.log(
    `\nIon's per-job overhead over a bare container start (idle publish→start p50 minus the loop's start p50): ${f(containers.startP50 - cli.startP50)} ms against the CLI, ${f(containers.startP50 - api.startP50)} ms against the bare Engine API`,
  );
  console.log(`containers suite finished in ${f((performance.now() - started) / 1000)} s`);
}
