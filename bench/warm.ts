/**
 * `BENCH_SUITE=warm npm run bench`: warm modules against cold ones and a plain spawn loop,
 * all in one run on the embedded defaults (docs/benchmarks.md, "Warm modules").
 *
 * One Python module (the SDK helper, `bench-module.py` written to a temp dir) records when
 * its function started (`started_ns` insight) and raises the next stage's event. Measured:
 *   1. plain spawn loops of the same `python3` module and of the default bench's `sh` script
 *      (a job-like directory per run, BENCH_CONCURRENCY at once, no Ion);
 *   2. the three-stage pipeline of that module, cold then warm: idle publish→stage-1 start
 *      (BENCH_PROBES events one at a time) and a burst of BENCH_EVENTS root events;
 *   3. a one-stage module that sleeps BENCH_LOAD_MS (default 300) at start-up (a stand-in
 *      for loading a model), BENCH_LOAD_JOBS (default 100) jobs cold then warm.
 */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { IonApp, moduleBaseEnv } from '../src/app/ion-app.js';
import { createLogger } from '../src/app/logger.js';
import { loadConfig } from '../src/config/config.js';
import { f, intEnv, loadAverage, nsToMs, percentile, table, wallMs } from './util.js';

const N = intEnv('BENCH_EVENTS', 200);
const CONCURRENCY = intEnv('BENCH_CONCURRENCY', 4);
const PROBES = intEnv('BENCH_PROBES', 20);
const LOAD_MS = intEnv('BENCH_LOAD_MS', 300);
const LOAD_JOBS = intEnv('BENCH_LOAD_JOBS', 100);
const DEADLINE_MS = 300_000;
const SDK = resolve(import.meta.dirname, '../sdk/python');

const MODULE = `import os, sys, time
if os.environ.get("LOAD_MS"):
    time.sleep(int(os.environ["LOAD_MS"]) / 1000)  # loading a model
sys.path.insert(0, ${JSON.stringify(SDK)})
from ion_warm import serve

def main():
    started = time.time_ns()
    with open("out/insights.json", "w") as f:
        f.write('[{"key":"started_ns","value":"%d"}]' % started)
    nxt = os.environ.get("NEXT")
    if nxt:
        with open("out/events/e.json", "w") as f:
            f.write('[{"key":"eventType","value":"%s"}]' % nxt)
    return 0

serve(main)
`;
const SH = `printf '[{"key":"started_ns","value":"%s"}]' "$(date +%s%N)" > out/insights.json; printf '[{"key":"eventType","value":"x"}]' > out/events/e.json`;

interface IonRun {
  jobsPerSec: number;
  idleP50: number;
  idleP99: number;
  perJobMs: number;
}

/** Runs `runs` module processes, `concurrency` at once, each in a fresh job-like directory. */
async function spawnLoop(command: string[], runs: number): Promise<number> {
  const root = await mkdtemp(join(tmpdir(), 'ion-bench-warm-loop-'));
  const env = { ...moduleBaseEnv(process.env), NEXT: 'x' };
  let next = 0;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < runs) {
      const dir = join(root, String(next++));
      for (const d of ['in/data', 'out/data', 'out/events'])
        await mkdir(join(dir, d), { recursive: true });
      await writeFile(join(dir, 'in/eventmeta.json'), '[]');
      const code = await new Promise<number | null>((res, rej) => {
        const child = spawn(command[0]!, command.slice(1), { cwd: dir, env, stdio: 'ignore' });
        child.once('error', rej);
        child.once('exit', res);
      });
      if (code !== 0) throw new Error(`${command.join(' ')} exited with ${code}`);
      await rm(dir, { recursive: true, force: true });
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  const seconds = (performance.now() - t0) / 1000;
  await rm(root, { recursive: true, force: true });
  return runs / seconds;
}

/** The module pipeline in a fresh in-process Ion: idle probes, then a burst. */
async function runIon(
  script: string,
  warm: boolean,
  stages: number,
  probes: number,
  events: number,
  loadMs = 0,
): Promise<IonRun> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ion-bench-warm-'));
  const config = loadConfig({ flags: { dataDir, logLevel: 'silent' } });
  const app = await IonApp.create(
    config,
    createLogger('silent'),
    { api: false, relay: true, workers: true },
    process.env,
  );
  await app.start();
  const types = Array.from({ length: stages + 1 }, (_, i) => `bench.w${i}`);
  await app.control.applyPipeline({
    modules: Array.from({ length: stages }, (_, i) => ({
      name: `stage${i + 1}`,
      subscribes: [types[i]],
      publishes: i + 1 < stages ? [types[i + 1]] : [],
      run: { command: ['python3', script] },
      env: {
        ...(i + 1 < stages ? { NEXT: types[i + 1] } : {}),
        ...(loadMs > 0 ? { LOAD_MS: String(loadMs) } : {}),
      },
      retries: 0,
      timeout: '60s',
      concurrency: CONCURRENCY,
      ...(warm ? { warm: true } : {}),
    })),
  });
  const reader = new Database(join(dataDir, 'store.db'), { readonly: true });
  const done = reader.prepare("SELECT count(*) FROM jobs WHERE state = 'succeeded'").pluck();
  const bad = reader
    .prepare("SELECT count(*) FROM jobs WHERE state IN ('failed','dead_lettered')")
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
  const publishedAt = new Map<string, number>();
  const publish = async (): Promise<string> => {
    const at = wallMs();
    const { event } = await app.control.publish({ type: types[0]! });
    publishedAt.set(event.eventId, at);
    return event.eventId;
  };
  // Idle: one root event at a time (the first also starts the warm processes: not counted).
  const idle: number[] = [];
  for (let i = 0; i < probes; i++) {
    const id = await publish();
    await waitJobs((i + 1) * stages);
    const started = reader
      .prepare("SELECT value FROM insights WHERE event_id = ? AND key = 'started_ns'")
      .pluck()
      .get(id) as string;
    if (i > 0 || !warm) idle.push(nsToMs(started) - publishedAt.get(id)!);
  }
  const t0 = performance.now();
  for (let i = 0; i < events; i++) await publish();
  await waitJobs((probes + events) * stages);
  const seconds = (performance.now() - t0) / 1000;
  reader.close();
  await app.stop();
  await rm(dataDir, { recursive: true, force: true });
  return {
    jobsPerSec: (events * stages) / seconds,
    idleP50: percentile(idle, 50),
    idleP99: percentile(idle, 99),
    perJobMs: (seconds * 1000) / (events * stages),
  };
}

export async function runWarmSuite(): Promise<void> {
  const started = performance.now();
  const dir = await mkdtemp(join(tmpdir(), 'ion-bench-warm-mod-'));
  const script = join(dir, 'bench-module.py');
  await writeFile(script, MODULE);
  console.log(
    `warm suite: ${N} events x 3 stages, concurrency ${CONCURRENCY}, ${PROBES} idle probes; load ${loadAverage()}`,
  );
  const shLoop = await spawnLoop(['sh', '-c', SH], 3 * N);
  const pyLoop = await spawnLoop(['python3', script], 3 * N);
  const cold = await runIon(script, false, 3, PROBES, N);
  const warm = await runIon(script, true, 3, PROBES + 1, N);
  console.log('\nThree-stage trivial pipeline (the same Python module cold and warm)');
  console.log(
    table([
      [
        'run',
        'jobs/s',
        'x python spawn loop',
        'x sh spawn loop',
        'idle publish→start p50 / p99 ms',
      ],
      ['plain spawn loop, sh (no Ion)', f(shLoop), '-', '1.0', '-'],
      ['plain spawn loop, python3 module (no Ion)', f(pyLoop), '1.0', f(pyLoop / shLoop, 2), '-'],
      [
        'Ion cold',
        f(cold.jobsPerSec),
        f(cold.jobsPerSec / pyLoop, 2),
        f(cold.jobsPerSec / shLoop, 2),
        `${f(cold.idleP50, 2)} / ${f(cold.idleP99, 2)}`,
      ],
      [
        'Ion warm',
        f(warm.jobsPerSec),
        f(warm.jobsPerSec / pyLoop, 2),
        f(warm.jobsPerSec / shLoop, 2),
        `${f(warm.idleP50, 2)} / ${f(warm.idleP99, 2)}`,
      ],
    ]),
  );
  const loadCold = await runIon(script, false, 1, 0, LOAD_JOBS, LOAD_MS);
  const loadWarm = await runIon(script, true, 1, 0, LOAD_JOBS, LOAD_MS);
  console.log(
    `\nA module that sleeps ${LOAD_MS} ms at start-up, ${LOAD_JOBS} jobs (concurrency ${CONCURRENCY})`,
  );
  console.log(
    table([
      ['run', 'jobs/s', 'ms per job (wall / jobs)', 'speed-up'],
      ['Ion cold', f(loadCold.jobsPerSec), f(loadCold.perJobMs), '1.0'],
      [
        'Ion warm (start-ups included)',
        f(loadWarm.jobsPerSec),
        f(loadWarm.perJobMs),
        f(loadCold.perJobMs / loadWarm.perJobMs, 1),
      ],
    ]),
  );
  await rm(dir, { recursive: true, force: true });
  console.log(`\nwarm suite finished in ${f((performance.now() - started) / 1000)} s`);
}
