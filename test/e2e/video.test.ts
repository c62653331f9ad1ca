import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InsightHitView, TraceView } from '../../src/api/client.js';
import type { Insight } from '../../src/core/types.js';
import { waitFor } from '../support/wait.js';
import { cleanup, cli, ROOT, startIon, type IonProcess } from './harness.js';

/**
 * The seed's scenario, for real: examples/video/ion.yaml on a real `ion up` (real ffmpeg, the
 * real CenterNet model on tfjs-wasm, real sample media from Debian packages). Needs
 * `npm ci --prefix examples/video` and examples/video/fetch-samples.sh, which .ci/run does;
 * without them the suite fails (it does not skip) and says what to run.
 */
const EXAMPLE = join(ROOT, 'examples/video');
const CACHE = process.env.ION_VIDEO_CACHE ?? join(EXAMPLE, '.cache');
const VIDEOS = ['slideshow.mp4', 'vtest-10s.mp4', 'corrupt.mp4', 'empty.mp4', 'blank.mp4'];

/** The insights of one job as an object (first value of a key wins). */
function byKey(insights: Insight[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const i of insights) out[i.key] ??= i.value;
  return out;
}

type Files = NonNullable<InsightHitView['event']>['files'];
type DetectedObject = Partial<Record<'label' | 'colour' | 'video' | 'time' | 'box', string>> & {
  files: Files;
};

/** The jobs of a hit list (one colour job = one object): its insights by key, its event's files. */
function objects(hits: InsightHitView[]): DetectedObject[] {
  const jobs = new Map<string, InsightHitView[]>();
  for (const h of hits) jobs.set(h.jobId, [...(jobs.get(h.jobId) ?? []), h]);
  return [...jobs.values()].map((rows) => ({
    ...byKey(rows),
    files: rows[0]!.event?.files ?? [],
  }));
}

describe('examples/video: video -> frames -> detect -> colour -> summary, and the insight query', () => {
  let ion: IonProcess;
  const traces = new Map<string, TraceView>();

  const summaryOf = (video: string) => {
    const t = traces.get(video)!;
    const job = t.jobs.find((j) => j.module === 'summary')!;
    return { job, insights: byKey(t.insights.filter((i) => i.jobId === job.jobId)) };
  };
  const query = async (...args: string[]) => {
    const res = await cli(['insight', 'ls', ...args, '--limit', '1000', '--json'], {
      apiUrl: ion.url,
    });
    expect(res.code, res.stderr).toBe(0);
    return (JSON.parse(res.stdout) as { insights: InsightHitView[] }).insights;
  };

  beforeAll(async () => {
    const missing = [
      ...VIDEOS.filter((v) => !existsSync(join(CACHE, v))).map((v) => join(CACHE, v)),
      ...(existsSync(join(EXAMPLE, 'node_modules/@vladmandic/human'))
        ? []
        : [join(EXAMPLE, 'node_modules')]),
    ];
    if (missing.length > 0)
      throw new Error(
        `missing ${missing.join(', ')}: run "npm ci --prefix examples/video && examples/video/fetch-samples.sh" (.ci/run does)`,
      );
    ion = await startIon({ args: ['-f', 'examples/video/ion.yaml'] });
    const published = new Map<string, string>();
    for (const video of VIDEOS) {
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
    // Every video's trace ends with its summary (the fan-in): wait for all five.
    for (const [video, correlationId] of published) {
      traces.set(
        video,
        await waitFor(
          `the summary of ${video} to succeed`,
          async () => {
            const t = await ion.client.trace(correlationId);
            const summary = t.jobs.find((j) => j.module === 'summary');
            return summary?.state === 'succeeded' ? t : undefined;
          },
          240_000,
          250,
        ),
      );
    }
  }, 420_000);

  afterAll(async () => {
    await ion?.stop();
    await cleanup(ion?.dataDir ?? '');
  });

  it('fans the slideshow out into one detect job per frame and finds the red motorcycle and the car', () => {
    const t = traces.get('slideshow.mp4')!;
    const frames = t.jobs.filter((j) => j.module === 'frames');
    expect(frames.map((j) => j.state)).toEqual(['succeeded']);
    const frameEvents = t.events.filter((e) => e.type === 'frame.ready');
    expect(frameEvents).toHaveLength(4); // 4 s at 1 frame per second
    expect(frameEvents.map((e) => e.data.time).sort()).toEqual([
      '0.000',
      '1.000',
      '2.000',
      '3.000',
    ]);
    expect(t.jobs.filter((j) => j.module === 'detect' && j.state === 'succeeded')).toHaveLength(4);
    for (const job of t.jobs) expect(job.state, `${job.module} ${job.lastError}`).toBe('succeeded');

    const colourJobs = t.jobs.filter((j) => j.module === 'colour');
    const seen = colourJobs.map((j) => byKey(t.insights.filter((i) => i.jobId === j.jobId)));
    // The motorcycle (first 2 s) named red; the car (last 2 s) found.
    const motorcycles = seen.filter((o) => o.label === 'motorcycle');
    expect(motorcycles.length).toBeGreaterThanOrEqual(1);
    expect(motorcycles.every((o) => o.colour === 'red' && Number(o.time) < 2)).toBe(true);
    const cars = seen.filter((o) => o.label === 'car');
    expect(cars.length).toBeGreaterThanOrEqual(1);
    expect(cars.every((o) => Number(o.time) >= 2)).toBe(true);
    for (const o of seen) {
      expect(o.video).toBe('slideshow.mp4');
      expect(Number(o.score)).toBeGreaterThanOrEqual(0.35);
      const [x, y, w, h] = o.box!.split(',').map(Number);
      expect(x! >= 0 && y! >= 0 && w! > 0 && h! > 0 && x! + w! <= 768 && y! + h! <= 576).toBe(true);
    }
  });

  it('loads the model once per warm detect process, not once per frame', async () => {
    const detect = [...traces.values()].flatMap((t) => t.jobs.filter((j) => j.module === 'detect'));
    expect(detect.length).toBe(16); // 4 + 10 + 2 frames
    const logs = await Promise.all(detect.map((j) => ion.client.jobLogs(j.jobId)));
    // A warm process's start-up output lands in its first job's log.
    const loads = logs.filter((l) => l.text.includes('CenterNet loaded on tfjs wasm')).length;
    expect(loads).toBeGreaterThanOrEqual(1);
    expect(loads).toBeLessThanOrEqual(2); // concurrency: 2
  });

  it('summarises each video once every frame is done (ion.trace.settled), as insights and a file', async () => {
    const slideshow = summaryOf('slideshow.mp4');
    expect(slideshow.insights).toMatchObject({
      video: 'slideshow.mp4',
      frames: '4',
      failed_jobs: '0',
    });
    expect(slideshow.insights.labels!.split(',').sort()).toEqual(['car', 'motorcycle']);
    expect(slideshow.insights.reason).toBeUndefined();
    const t = traces.get('slideshow.mp4')!;
    for (const job of t.jobs.filter((j) => j.module !== 'summary'))
      expect(job.finishedAt! <= slideshow.job.createdAt).toBe(true);
    const file = slideshow.job.outputs.find((o) => o.path === 'summary.json')!;
    const summary = JSON.parse(
      (await buffer(await ion.client.downloadBlob(file.sha256))).toString('utf8'),
    ) as { labels: Record<string, { count: number; colours: Record<string, number> }> };
    expect(summary.labels.motorcycle!.colours.red).toBe(summary.labels.motorcycle!.count);
    expect(summary.labels.car!.count).toBeGreaterThanOrEqual(1);

    const street = summaryOf('vtest-10s.mp4').insights;
    expect(street).toMatchObject({ video: 'vtest-10s.mp4', frames: '10', failed_jobs: '0' });
    expect(street.labels!.split(',')).toEqual(expect.arrayContaining(['person', 'car', 'truck']));
  });

  it('answers "red motorcycle" with the video, the time, the box and links to the crop and the frame', async () => {
    const hits = objects(await query('--has', 'label=motorcycle', '--has', 'colour=red'));
    expect(hits.length).toBeGreaterThanOrEqual(1);
    for (const hit of hits) {
      expect(hit).toMatchObject({ label: 'motorcycle', colour: 'red', video: 'slideshow.mp4' });
      expect(hit.time).toMatch(/^[01]\.000$/);
      expect(hit.box).toMatch(/^\d+,\d+,\d+,\d+$/);
      const crop = hit.files.find((f) => f.path.startsWith('crops/slideshow/'))!;
      const frame = hit.files.find((f) => f.path.startsWith('frames/slideshow/'))!;
      expect(crop.href).toMatch(/^\/v1\/blobs\/[0-9a-f]{64}\?name=.*motorcycle\.jpg$/);
      // The links serve the JPEG crop and frame.
      for (const f of [crop, frame]) {
        const res = await fetch(`${ion.url}${f.href}`);
        expect(res.status).toBe(200);
        expect(res.headers.get('content-type')).toBe('image/jpeg');
        expect([...new Uint8Array(await res.arrayBuffer()).subarray(0, 2)]).toEqual([0xff, 0xd8]);
      }
    }
  });

  it('answers "white truck" and "any car" across videos', async () => {
    const trucks = objects(await query('--has', 'label=truck', '--has', 'colour=white'));
    expect(trucks.length).toBeGreaterThanOrEqual(3); // the white van of vtest.avi, frame after frame
    expect(new Set(trucks.map((t) => t.video))).toEqual(new Set(['vtest-10s.mp4']));
    const cars = objects(await query('--has', 'label=car'));
    expect(new Set(cars.map((c) => c.video))).toEqual(new Set(['slideshow.mp4', 'vtest-10s.mp4']));
    expect(cars.every((c) => c.label === 'car' && c.time !== undefined)).toBe(true);
    // Pairs on different objects do not combine: nothing is both a truck and red here.
    expect(await query('--has', 'label=truck', '--has', 'colour=red')).toEqual([]);
    // The table form: one row per object.
    const table = await cli(['insight', 'ls', '--has', 'label=motorcycle', '--has', 'colour=red'], {
      apiUrl: ion.url,
    });
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(
      /colour\s+label=motorcycle colour=red .*video=slideshow\.mp4 time=/,
    );
  });

  it('fails a corrupt video with one clear line (no stack trace), and the summary says why', async () => {
    const t = traces.get('corrupt.mp4')!;
    const frames = t.jobs.find((j) => j.module === 'frames')!;
    expect(frames.state).toBe('dead_lettered');
    expect(frames.attempts).toBe(1); // retries: 0, the same file fails the same way
    const log = (await ion.client.jobLogs(frames.jobId)).text;
    expect(log).toContain('frames: corrupt.mp4 is not a readable video: corrupt.mp4: Invalid data');
    expect(log).not.toMatch(/\n\s+at /);
    expect(log).not.toContain(ion.dataDir);
    expect(t.jobs.filter((j) => j.module === 'detect')).toEqual([]);
    expect(summaryOf('corrupt.mp4').insights).toMatchObject({
      video: 'corrupt.mp4',
      frames: '0',
      objects: '0',
      failed_jobs: '1',
      reason: expect.stringMatching(/^frames failed: /) as unknown,
    });
  });

  it('ends a video with no frames (audio only) cleanly, with the reason', () => {
    const t = traces.get('empty.mp4')!;
    expect(t.jobs.map((j) => [j.module, j.state])).toEqual([
      ['frames', 'succeeded'],
      ['summary', 'succeeded'],
    ]);
    const frames = t.jobs.find((j) => j.module === 'frames')!;
    expect(byKey(t.insights.filter((i) => i.jobId === frames.jobId))).toMatchObject({
      frames: '0',
      reason: 'no video stream',
    });
    expect(summaryOf('empty.mp4').insights).toMatchObject({
      frames: '0',
      failed_jobs: '0',
      reason: 'no frames: no video stream',
    });
  });

  it('ends frames with no object cleanly: no object event, objects=0 and the reason', () => {
    const t = traces.get('blank.mp4')!;
    const detect = t.jobs.filter((j) => j.module === 'detect');
    expect(detect).toHaveLength(2);
    for (const job of detect) {
      expect(job.state).toBe('succeeded');
      expect(byKey(t.insights.filter((i) => i.jobId === job.jobId))).toMatchObject({
        objects: '0',
        reason: 'no object scoring >= 0.35',
      });
    }
    expect(t.events.filter((e) => e.type === 'object.detected')).toEqual([]);
    expect(summaryOf('blank.mp4').insights).toMatchObject({
      frames: '2',
      objects: '0',
      reason: 'no object detected',
    });
  });
});
