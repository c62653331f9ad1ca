#!/usr/bin/env node
// Ion example module `frames`: extracts frames from a video with ffmpeg and raises one
// `frame.ready` event per frame (the fan-out).
//
// Subscribes to: video.uploaded      Publishes: frame.ready
//
// Input: the event's one video file in in/data/ (any container ffmpeg reads). Optional event
// metadata `video` names the video (default: the file's name).
// Output: out/data/frames/<video>/f00001.jpg ... and per frame an event carrying that file
// and metadata video, time (seconds from the start, 3 decimals), frame (1-based).
// Insights: video, frames, duration (seconds, when ffmpeg reports it), fps.
//
// Environment: FRAME_RATE (frames per second to extract, default 1), MAX_FRAMES (default
// 600: a longer video is sampled only up to that many frames, and says so), FFMPEG_PATH
// (default: the binary of @ffmpeg-installer/ffmpeg). ffmpeg writes the frames straight to
// disk, so a long video never sits in this process's memory.
//
// Outcomes: a file ffmpeg cannot read (corrupt, not a video) fails with exit code 2 and a
// one-line reason; a readable file with no video stream (audio only) succeeds with frames=0
// and a `reason` insight, raising nothing.
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { baseDir, guarded, kv, listFiles, numberEnv, readMeta, slug, UsageError } from './lib.mjs';

const require = createRequire(import.meta.url);

function ffmpegPath() {
  if (process.env.FFMPEG_PATH) return process.env.FFMPEG_PATH;
  try {
    return require('@ffmpeg-installer/ffmpeg').path;
  } catch {
    throw new UsageError(
      'no ffmpeg: run `npm ci --prefix examples/video` or set FFMPEG_PATH to an ffmpeg binary',
    );
  }
}

/** Runs ffmpeg; resolves with its exit code and stderr (never rejects on a non-zero exit). */
function ffmpeg(args) {
  return new Promise((resolve, reject) => {
    execFile(
      ffmpegPath(),
      ['-hide_banner', ...args],
      { maxBuffer: 8 << 20 },
      (err, _out, stderr) => {
        if (err && typeof err.code !== 'number')
          reject(new UsageError(`cannot run ffmpeg: ${err.message}`));
        else resolve({ code: err ? err.code : 0, stderr: String(stderr) });
      },
    );
  });
}

/** The last meaningful line ffmpeg printed, for a one-line reason. */
function lastLine(stderr) {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  return (
    lines.filter((l) => !/output file must be specified/i.test(l)).pop() ?? 'no output'
  ).slice(0, 300);
}

async function main() {
  const base = baseDir();
  const rate = numberEnv('FRAME_RATE', 1, { max: 60 });
  const maxFrames = Math.floor(numberEnv('MAX_FRAMES', 600));
  const inputs = listFiles(join(base, 'in', 'data'));
  if (inputs.length !== 1)
    throw new UsageError(
      `the event must carry exactly one video file, it carries ${inputs.length}`,
    );
  const file = inputs[0];
  const meta = readMeta(base);
  const video = meta.get('video') || file.split('/').pop();
  const input = join(base, 'in', 'data', file);

  // Probe: `ffmpeg -i` alone prints the streams (and complains about the missing output).
  const probe = await ffmpeg(['-i', input]);
  if (!/^\s*Input #0/m.test(probe.stderr)) {
    console.error(
      `frames: ${video} is not a readable video: ${lastLine(probe.stderr.split(input).join(file))}`,
    );
    return 2;
  }
  const insights = { video, fps: rate };
  const duration = /Duration: (\d+):(\d+):(\d+(?:\.\d+)?)/.exec(probe.stderr);
  if (duration)
    insights.duration = (+duration[1] * 3600 + +duration[2] * 60 + +duration[3]).toFixed(2);
  if (!/Stream #0:\d+.*: Video:/.test(probe.stderr)) {
    console.log(`frames: ${video} has no video stream: no frame to extract`);
    writeFileSync(
      join(base, 'out', 'insights.json'),
      JSON.stringify(kv({ ...insights, frames: 0, reason: 'no video stream' }), null, 2) + '\n',
    );
    return 0;
  }

  const folder = `frames/${slug(video)}`;
  mkdirSync(join(base, 'out', 'data', folder), { recursive: true });
  const started = Date.now();
  const run = await ffmpeg([
    '-nostdin',
    '-loglevel',
    'error',
    '-i',
    input,
    '-an',
    '-vf',
    `fps=${rate}`,
    '-frames:v',
    String(maxFrames),
    '-q:v',
    '2',
    join(base, 'out', 'data', folder, 'f%05d.jpg'),
  ]);
  const frames = readdirSync(join(base, 'out', 'data', folder))
    .filter((f) => /^f\d{5}\.jpg$/.test(f))
    .sort();
  if (run.code !== 0 && frames.length === 0) {
    console.error(
      `frames: ${video} could not be decoded: ${lastLine(run.stderr.split(input).join(file))}`,
    );
    return 2;
  }
  if (run.code !== 0)
    console.log(
      `frames: ffmpeg stopped early (${lastLine(run.stderr)}); keeping the ${frames.length} frames it wrote`,
    );
  mkdirSync(join(base, 'out', 'events'), { recursive: true });
  frames.forEach((name, i) => {
    const event = {
      eventType: 'frame.ready',
      files: [`${folder}/${name}`],
      data: { video, time: (i / rate).toFixed(3), frame: String(i + 1) },
    };
    writeFileSync(
      join(base, 'out', 'events', `${name.replace('.jpg', '')}.json`),
      JSON.stringify(event) + '\n',
    );
  });
  if (frames.length === maxFrames) console.log(`frames: stopped at MAX_FRAMES=${maxFrames}`);
  console.log(
    `frames: ${video}: ${frames.length} frames at ${rate}/s in ${Date.now() - started} ms`,
  );
  const out = { ...insights, frames: frames.length };
  if (frames.length === 0) out.reason = 'the video stream decoded to no frame';
  writeFileSync(join(base, 'out', 'insights.json'), JSON.stringify(kv(out), null, 2) + '\n');
  return 0;
}

process.exitCode = await guarded('frames', main)();
