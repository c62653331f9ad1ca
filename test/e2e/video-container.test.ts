import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InsightHitView, TraceView } from '../../src/api/client.js';
import type { Insight } from '../../src/core/types.js';
import {
  dockerClient,
  dockerEngine,
  ENGINE_SETUP_TIMEOUT_MS,
  type ContainerEngine,
} from '../support/container-engine.js';
import { waitFor } from '../support/wait.js';
import { cleanup, cli, ROOT, startIon, type IonProcess } from './harness.js';

/**
 * The container form of examples/video: examples/video/build-image.sh builds
 * ion/video-example:local on a real dockerd (the engine helper starts it with Ion's images),
 * and examples/video/ion-container.yaml runs every module in it through `ion up`, detect and
 * colour as warm containers (one long-lived container per slot). A shorter run than
 * video.test.ts (containers cost more to start): the slideshow and a corrupt file.
 */
const EXAMPLE = join(ROOT, 'examples/video');
const CACHE = process.env.ION_VIDEO_CACHE ?? join(EXAMPLE, '.cache');
const run = promisify(execFile);

function byKey(insights: Insight[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const i of insights) out[i.key] ??= i.value;
  return out;
}

describe('examples/video in containers (ion-container.yaml on dockerd)', () => {
  let ion: IonProcess;
  let engine: ContainerEngine;
  const traces = new Map<string, TraceView>();

  beforeAll(async () => {
    for (const video of ['slideshow.mp4', 'corrupt.mp4'])
      if (!existsSync(join(CACHE, video)))
        throw new Error(
          `missing ${join(CACHE, video)}: run "npm ci --prefix examples/video && examples/video/fetch-samples.sh" (.ci/run does)`,
        );
    engine = await dockerEngine();
    await run(join(EXAMPLE, 'build-image.sh'), [], {
      env: { ...process.env, ...engine.cliEnv, DOCKER_HOST: engine.dockerHost },
      timeout: 300_000,
    });
    ion = await startIon({
      env: { DOCKER_HOST: engine.dockerHost },
      args: ['-f', 'examples/video/ion-container.yaml'],
    });
    const published = new Map<string, string>();
    for (const video of ['slideshow.mp4', 'corrupt.mp4']) {
      const res = await cli(
        [
          'event',
          'publish',
          'video.uploaded',
          '--file',
          `${video}=${join(CACHE, video)}`,
          '--json',
        ],
        { apiUrl: ion.url },
      );
      expect(res.code, res.stderr).toBe(0);
      published.set(video, (JSON.parse(res.stdout) as { correlationId: string }).correlationId);
    }
    for (const [video, correlationId] of published)
      traces.set(
        video,
        await waitFor(
          `the summary of ${video} to succeed`,
          async () => {
            const t = await ion.client.trace(correlationId);
            const summary = t.jobs.find((j) => j.module === 'summary');
            return summary?.state === 'succeeded' ? t : undefined;
          },
          300_000,
          250,
        ),
      );
  }, ENGINE_SETUP_TIMEOUT_MS + 420_000);

  afterAll(async () => {
    await ion?.stop();
    await cleanup(ion?.dataDir ?? '');
  });

  it('finds the red motorcycle and the car, and summarises the video', async () => {
    const t = traces.get('slideshow.mp4')!;
    for (const job of t.jobs) expect(job.state, `${job.module} ${job.lastError}`).toBe('succeeded');
    expect(t.jobs.filter((j) => j.module === 'detect')).toHaveLength(4);
    const seen = t.jobs
      .filter((j) => j.module === 'colour')
      .map((j) => byKey(t.insights.filter((i) => i.jobId === j.jobId)));
    expect(seen.some((o) => o.label === 'motorcycle' && o.colour === 'red')).toBe(true);
    expect(seen.some((o) => o.label === 'car')).toBe(true);
    const summary = t.jobs.find((j) => j.module === 'summary')!;
    expect(byKey(t.insights.filter((i) => i.jobId === summary.jobId))).toMatchObject({
      video: 'slideshow.mp4',
      frames: '4',
      failed_jobs: '0',
    });
    const res = await cli(
      ['insight', 'ls', '--has', 'label=motorcycle', '--has', 'colour=red', '--json'],
      { apiUrl: ion.url },
    );
    expect(res.code, res.stderr).toBe(0);
    const hits = (JSON.parse(res.stdout) as { insights: InsightHitView[] }).insights;
    expect(hits.some((h) => h.key === 'video' && h.value === 'slideshow.mp4')).toBe(true);
  });

  it('runs the warm modules in long-lived containers: four detect jobs, at most two containers', async () => {
    const t = traces.get('slideshow.mp4')!;
    expect(t.jobs.filter((j) => j.module === 'detect')).toHaveLength(4);
    const warm = await dockerClient(engine).listContainers({
      all: true,
      filters: { label: ['ion.executor=docker-warm', 'ion.module=detect'] },
    });
    // Idle slots stay up (idleTimeout 5m), one per concurrent job at most (concurrency 2).
    expect(warm.length).toBeGreaterThanOrEqual(1);
    expect(warm.length).toBeLessThanOrEqual(2);
    for (const c of warm) expect(c.State).toBe('running');
  });

  it('fails a corrupt video with its one-line reason, in a container too', async () => {
    const t = traces.get('corrupt.mp4')!;
    const frames = t.jobs.find((j) => j.module === 'frames')!;
    expect(frames.state).toBe('dead_lettered');
    const log = (await ion.client.jobLogs(frames.jobId)).text;
    expect(log).toContain('frames: corrupt.mp4 is not a readable video: corrupt.mp4: Invalid data');
    expect(log).not.toMatch(/\n\s+at /);
  });
});
