// The detector of the `detect` module, on its own so a plain loop can time it without Ion
// (BENCH_SUITE=video): MB3-CenterNet from @vladmandic/human on tfjs-core with the WebAssembly
// backend, nothing downloaded at run time.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { loadGraphModel } from '@tensorflow/tfjs-converter';
import { UsageError } from './lib.mjs';

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

/** Loads the model (about 1 s); once per process. */
export async function loadModel() {
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

/** Objects in one image: [{label, score, box: [x, y, w, h]}] in the image's pixels. */
export async function detect(model, file, minScore, maxObjects) {
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
