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
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import { serve } from '../../../sdk/node/ion-warm.mjs';
import { baseDir, guarded, kv, listFiles, numberEnv, readMeta, slug, UsageError } from './lib.mjs';

const require = createRequire(import.meta.url);
const SIZE = 512;
// The 80 COCO classes in CenterNet's output order.
const LABELS = (
  'person,bicycle,car,motorcycle,airplane,bus,train,truck,boat,traffic light,fire hydrant,' +
  'stop sign,parking meter,bench,bird,cat,dog,horse,sheep,cow,elephant,bear,zebra,giraffe,' +
  'backpack,umbrella,handbag,tie,suitcase,frisbee,skis,snowboard,sports ball,kite,' +
  'baseball bat,baseball glove,skateboard,surfboard,tennis racket,bottle,wine glass,cup,fork,' +
  'knife,spoon,bowl,banana,apple,sandwich,orange,broccoli,carrot,hot dog,pizza,donut,cake,' +
  'chair,couch,potted plant,bed,dining table,toilet,tv,laptop,mouse,remote,keyboard,' +
  'cell phone,microwave,oven,toaster,sink,refrigerator,book,clock,vase,scissors,teddy bear,' +
  'hair drier,toothbrush'
).split(',');

async function loadModel() {
  const started = Date.now();
  const dir = join(dirname(require.resolve('@vladmandic/human')), '..', 'models');
  await tf.setBackend('wasm');
  await tf.ready();
  const json = JSON.parse(readFileSync(join(dir, 'centernet.json'), 'utf8'));
  const bin = readFileSync(join(dir, 'centernet.bin'));
  const model = await loadGraphModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology,
      format: json.format,
      weightSpecs: json.weightsManifest.flatMap((g) => g.weights),
      weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength),
    }),
  );
  console.log(`detect: CenterNet loaded on tfjs ${tf.getBackend()} in ${Date.now() - started} ms`);
  return model;
}

const model = await loadModel();

/** Objects in one image: [{label, score, box: [x, y, w, h]}] in the image's pixels. */
async function detect(file, minScore, maxObjects) {
  let image;
  try {
    image = sharp(file).removeAlpha();
    const { width, height } = await image.metadata();
    const rgb = await image.clone().resize(SIZE, SIZE, { fit: 'fill' }).raw().toBuffer();
    image = { width, height, rgb };
  } catch (err) {
    throw new UsageError(`${file.split('/').pop()} is not a readable image: ${err.message}`);
  }
  const { width: W, height: H, rgb } = image;
  // CenterNet wants the frame stretched to 512x512, values 0..255.
  const input = tf.tensor4d(Float32Array.from(rgb), [1, SIZE, SIZE, 3]);
  const out = model.execute(input, 'tower_0/detections'); // [1, 100, 6]: x1 y1 x2 y2 score class
  const rows = (await out.array())[0].filter((d) => d[4] >= minScore);
  tf.dispose([input, out]);
  if (rows.length === 0) return [];
  const keep = await tf.image.nonMaxSuppressionAsync(
    rows.map((d) => [d[1], d[0], d[3], d[2]]),
    rows.map((d) => d[4]),
    maxObjects,
    0.4,
    minScore,
  );
  const indices = Array.from(await keep.data());
  keep.dispose();
  return indices.map((i) => {
    const [x1, y1, x2, y2, score, cls] = rows[i];
    // Boxes can stray outside the image: clamp them.
    const left = Math.max(0, Math.min(W - 1, Math.round((x1 / SIZE) * W)));
    const top = Math.max(0, Math.min(H - 1, Math.round((y1 / SIZE) * H)));
    const right = Math.max(left + 1, Math.min(W, Math.round((x2 / SIZE) * W)));
    const bottom = Math.max(top + 1, Math.min(H, Math.round((y2 / SIZE) * H)));
    return {
      label: LABELS[Math.round(cls)] ?? `class-${cls}`,
      score: Math.round(score * 1000) / 1000,
      box: [left, top, right - left, bottom - top],
    };
  });
}

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
    const objects = await detect(file, minScore, maxObjects);
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
