/**
 * `BENCH_SUITE=video npm run bench`: the seed's scenario (examples/video) on `vtest.avi` at
 * 1 frame per second, three ways in one run (docs/benchmarks.md, "Video scenario"):
 *   1. the detector alone in a plain loop, no Ion: the frames extracted once with ffmpeg,
 *      then `BENCH_VIDEO_PROCS` (default 2, one per core) node processes that load the model
 *      once and detect their share of the frames: the limit;
 *   2. the whole pipeline on the embedded defaults, `detect` warm (as examples/video/ion.yaml
 *      declares it): publish the video, wait for its `summary` (ion.trace.settled);
 *   3. the same with `detect` and `colour` cold (a process, and a model load, per job).
 * Figures: frames per second, and each run's time against the detector alone.
 * Needs `npm ci --prefix examples/video && examples/video/fetch-samples.sh` first.
 */
import { spawn } from 'node:child_process';
import { createReadStream, existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { IonApp } from '../src/app/ion-app.js';
import { createLogger } from '../src/app/logger.js';
import { loadConfig } from '../src/config/config.js';
import { loadPipelineDocument } from '../src/core/pipeline-file.js';
import { f, intEnv, loadAverage, table } from './util.js';

const EXAMPLE = resolve(import.meta.dirname, '../examples/video');
const CACHE = process.env.ION_VIDEO_CACHE ?? join(EXAMPLE, '.cache');
const VIDEO = process.env.BENCH_VIDEO ?? join(CACHE, 'vtest.avi');
const PROCS = intEnv('BENCH_VIDEO_PROCS', 2);
const DEADLINE_MS = 900_000;

/** Runs a command to its end; rejects with its stderr when it fails. */
function run(argv: string[], cwd: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolvePromise(out) : reject(new Error(`${argv.join(' ')}: ${err.trim()}`)),
    );
  });
}

/** The loop a user would write without Ion: load once, detect each frame of a share. */
const LOOP = `import { detect, loadModel } from ${JSON.stringify(join(EXAMPLE, 'modules/detector.mjs'))};
const [,, ...files] = process.argv;
const model = await loadModel();
let objects = 0;
for (const file of files) objects += (await detect(model, file, 0.35, 20)).length;
console.log(JSON.stringify({ frames: files.length, objects }));
`;

async function detectorAlone(): Promise<{ seconds: number; frames: number; objects: number }> {
  const dir = await mkdtemp(join(tmpdir(), 'ion-bench-video-'));
  try {
    const installer = join(EXAMPLE, 'node_modules/@ffmpeg-installer/ffmpeg/index.js');
    const ffmpeg = ((await import(installer)) as { default: { path: string } }).default;
    await run(
      [
        ffmpeg.path,
        '-v',
        'error',
        '-i',
        VIDEO,
        '-vf',
        'fps=1',
        '-q:v',
        '2',
        join(dir, 'f%05d.jpg'),
      ],
      dir,
    );
    const frames = (await readdir(dir)).filter((n) => n.endsWith('.jpg')).map((n) => join(dir, n));
    const script = join(EXAMPLE, '.cache', `bench-loop-${process.pid}.mjs`);
    await writeFile(script, LOOP);
    const t0 = performance.now();
    const shares = Array.from({ length: PROCS }, (_, i) =>
      frames.filter((_, j) => j % PROCS === i),
    );
    const outs = await Promise.all(shares.map((share) => run(['node', script, ...share], EXAMPLE)));
    const seconds = (performance.now() - t0) / 1000;
    await rm(script, { force: true });
    const objects = outs.reduce(
      (n, o) => n + (JSON.parse(o.trim().split('\n').pop()!) as { objects: number }).objects,
      0,
    );
    return { seconds, frames: frames.length, objects };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The whole pipeline on one video; `warm` false turns detect and colour cold. */
async function pipeline(
  warm: boolean,
): Promise<{ seconds: number; frames: number; objects: number }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'ion-bench-video-ion-'));
  const config = loadConfig({ flags: { dataDir, logLevel: 'silent' } });
  const app = await IonApp.create(
    config,
    createLogger('silent'),
    { api: false, relay: true, workers: true },
    process.env,
  );
  try {
    await app.start();
    const doc = loadPipelineDocument(join(EXAMPLE, 'ion.yaml')) as {
      modules: Record<string, unknown>[];
    };
    if (!warm) for (const m of doc.modules) delete m.warm;
    await app.control.applyPipeline(doc);
    const file = await app.control.putBlob(createReadStream(VIDEO));
    const t0 = performance.now();
    const { event } = await app.control.publish({
      type: 'video.uploaded',
      files: [{ path: 'vtest.avi', ...file }],
    });
    const deadline = t0 + DEADLINE_MS;
    for (;;) {
      const trace = await app.control.trace(event.correlationId);
      const summary = trace.jobs.find((j) => j.module === 'summary');
      if (summary?.state === 'succeeded') {
        const seconds = (performance.now() - t0) / 1000;
        const bad = trace.jobs.filter((j) => j.state !== 'succeeded');
        if (bad.length > 0) throw new Error(`${bad.length} jobs did not succeed; see ${dataDir}`);
        const count = (type: string) => trace.events.filter((e) => e.type === type).length;
        return { seconds, frames: count('frame.ready'), objects: count('object.detected') };
      }
      if (performance.now() > deadline) throw new Error(`timed out; see ${dataDir}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    await app.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

export async function runVideoSuite(): Promise<void> {
  if (!existsSync(VIDEO) || !existsSync(join(EXAMPLE, 'node_modules')))
    throw new Error(
      `${VIDEO} or the example's packages are missing: run npm ci --prefix examples/video && examples/video/fetch-samples.sh`,
    );
  console.log(
    `video suite: ${VIDEO} at 1 frame/s, ${PROCS} detector processes; load ${loadAverage()}`,
  );
  const alone = await detectorAlone();
  const warm = await pipeline(true);
  const cold = await pipeline(false);
  const row = (name: string, r: { seconds: number; frames: number; objects: number }) => [
    name,
    String(r.frames),
    String(r.objects),
    f(r.seconds, 1),
    f(r.frames / r.seconds, 2),
    f(r.seconds / alone.seconds, 2),
  ];
  console.log(
    table([
      ['run', 'frames', 'objects', 'seconds', 'frames/s', 'x detector-alone time'],
      row('detector alone, plain loop (no Ion)', alone),
      row('Ion pipeline, detect warm', warm),
      row('Ion pipeline, detect cold', cold),
    ]),
  );
  console.log(
    `warm is ${f(cold.seconds / warm.seconds, 2)}x faster than cold; load ${loadAverage()}`,
  );
}
