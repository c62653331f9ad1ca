#!/usr/bin/env node
// Ion example module `detect`: COCO object detection on one frame, a warm module.
//
// Subscribes to: frame.ready      Publishes: object.detected
//
// The model is MB3-CenterNet (80 COCO classes) shipped inside the npm package
// @vladmandic/human (models/centernet.json + .bin, 4 MB), run with @tensorflow/tfjs-core and
// the WebAssembly backend: nothing is downloaded at run time. It loads once per process
// (warm: true, sdk/node/ion-warm.mjs); each job then costs about 0.2 s on one CPU core.
//
// Per object scoring at least MIN_SCORE (default 0.35), at most MAX_OBJECTS (default 20)
// after non-maximum suppression, it writes the crop to out/data/crops/<video>/<frame>-<n>-<label>.jpg,
// copies the frame to out/data/frames/... (so the event links both) and raises
// object.detected with metadata video, time, frame, label, score, box ("x,y,w,h" in the
// frame's pixels). Insights: objects (count) and labels. A frame with no object above the
// threshold succeeds with objects=0 and a `reason` insight, and raises nothing.
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import { serve } from '../../../sdk/node/ion-warm.mjs';
import { detect, loadModel } from './detector.mjs';
import { baseDir, guarded, kv, listFiles, numberEnv, readMeta, slug, UsageError } from './lib.mjs';

const model = await loadModel();

async function main() {
  const base = baseDir();
  const minScore = numberEnv('MIN_SCORE', 0.35, { max: 1 });
  const maxObjects = Math.floor(numberEnv('MAX_OBJECTS', 20));
  const frames = listFiles(join(base, 'in', 'data')).filter((f) => /\.(jpe?g|png|webp)$/i.test(f));
  if (frames.length === 0)
    throw new UsageError('the event carries no frame image (.jpg, .png, .webp)');
  const meta = readMeta(base);
  const video = meta.get('video') ?? 'unknown';
  const started = Date.now();
  const labels = [];
  let n = 0;
  for (const frame of frames) {
    const file = join(base, 'in', 'data', frame);
    const objects = await detect(model, file, minScore, maxObjects);
    const stem = frame
      .split('/')
      .pop()
      .replace(/\.[^.]*$/, '');
    const frameOut = `frames/${slug(video)}/${frame.split('/').pop()}`;
    if (objects.length > 0) {
      mkdirSync(dirname(join(base, 'out', 'data', frameOut)), { recursive: true });
      copyFileSync(file, join(base, 'out', 'data', frameOut));
    }
    for (const [i, o] of objects.entries()) {
      n += 1;
      labels.push(o.label);
      const crop = `crops/${slug(video)}/${stem}-${String(i + 1).padStart(2, '0')}-${o.label.replace(/ /g, '_')}.jpg`;
      mkdirSync(dirname(join(base, 'out', 'data', crop)), { recursive: true });
      const [left, top, width, height] = o.box;
      await sharp(file)
        .extract({ left, top, width, height })
        .jpeg({ quality: 90 })
        .toFile(join(base, 'out', 'data', crop));
      const event = {
        eventType: 'object.detected',
        files: [crop, frameOut],
        data: {
          video,
          time: meta.get('time') ?? '',
          frame: meta.get('frame') ?? stem,
          label: o.label,
          score: String(o.score),
          box: o.box.join(','),
        },
      };
      mkdirSync(join(base, 'out', 'events'), { recursive: true });
      writeFileSync(
        join(base, 'out', 'events', `${stem}-${String(i + 1).padStart(2, '0')}.json`),
        JSON.stringify(event) + '\n',
      );
    }
    console.log(
      `detect: ${video} ${frame}: ${objects.length ? objects.map((o) => `${o.label} ${o.score} [${o.box}]`).join('; ') : `no object scoring >= ${minScore}`}`,
    );
  }
  console.log(`detect: ${frames.length} frame(s) in ${Date.now() - started} ms`);
  writeFileSync(
    join(base, 'out', 'insights.json'),
    JSON.stringify(
      kv({
        video,
        time: meta.get('time') ?? '',
        objects: n,
        labels: [...new Set(labels)].join(','),
        ...(n === 0 ? { reason: `no object scoring >= ${minScore}` } : {}),
      }),
      null,
      2,
    ) + '\n',
  );
  return 0;
}

await serve(guarded('detect', main));
