#!/usr/bin/env node
// Ion example module `colour`: names the dominant colour of an object's crop and stores the
// object as insights, one job per object, so a query can ask for label=car AND colour=red.
//
// Subscribes to: object.detected      Publishes: nothing
//
// Method (saturation-weighted HSV votes): trim 15 % off each side of the crop, shrink it to
// 48x48, and bucket each pixel: black if V < 0.22; white or grey if S < 0.18 (white when
// V >= 0.75); otherwise red, orange, brown, yellow, green, blue, purple or pink by hue. A
// chromatic pixel votes with its saturation, an achromatic one with 0.35. The top chromatic
// colour wins if its share is at least 0.25, else the top colour overall. Good on vivid
// paint; lighting casts make silver/white/grey unreliable.
//
// Insights: label, colour, colour_share, score, video, time, frame, box ("x,y,w,h").
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { serve } from '../../../sdk/node/ion-warm.mjs';
import { baseDir, guarded, kv, listFiles, readMeta, UsageError } from './lib.mjs';

const CHROMATIC = new Set(['red', 'orange', 'brown', 'yellow', 'green', 'blue', 'purple', 'pink']);

function bucket(r, g, b) {
  const max = Math.max(r, g, b) / 255;
  const min = Math.min(r, g, b) / 255;
  const v = max;
  const s = max === 0 ? 0 : (max - min) / max;
  if (v < 0.22) return ['black', 0.35];
  if (s < 0.18) return [v >= 0.75 ? 'white' : 'grey', 0.35];
  const d = max - min;
  let h;
  const [R, G, B] = [r / 255, g / 255, b / 255];
  if (max === R) h = 60 * (((G - B) / d) % 6);
  else if (max === G) h = 60 * ((B - R) / d + 2);
  else h = 60 * ((R - G) / d + 4);
  if (h < 0) h += 360;
  let name;
  if (h < 15 || h >= 340) name = 'red';
  else if (h < 40) name = v < 0.6 ? 'brown' : 'orange';
  else if (h < 70) name = v < 0.5 ? 'brown' : 'yellow';
  else if (h < 165) name = 'green';
  else if (h < 255) name = 'blue';
  else if (h < 295) name = 'purple';
  else name = 'pink';
  return [name, s];
}

async function dominantColour(file) {
  let pixels;
  try {
    const { width, height } = await sharp(file).metadata();
    const dx = Math.floor(width * 0.15);
    const dy = Math.floor(height * 0.15);
    const region =
      width - 2 * dx >= 4 && height - 2 * dy >= 4
        ? { left: dx, top: dy, width: width - 2 * dx, height: height - 2 * dy }
        : { left: 0, top: 0, width, height };
    pixels = await sharp(file)
      .removeAlpha()
      .extract(region)
      .resize(48, 48, { fit: 'fill' })
      .raw()
      .toBuffer();
  } catch (err) {
    throw new UsageError(`${file.split('/').pop()} is not a readable image: ${err.message}`);
  }
  const votes = new Map();
  let total = 0;
  for (let i = 0; i < pixels.length; i += 3) {
    const [name, weight] = bucket(pixels[i], pixels[i + 1], pixels[i + 2]);
    votes.set(name, (votes.get(name) ?? 0) + weight);
    total += weight;
  }
  const ranked = [...votes].sort((a, b) => b[1] - a[1]);
  const chromatic = ranked.find(([name]) => CHROMATIC.has(name));
  const pick = chromatic && chromatic[1] / total >= 0.25 ? chromatic : ranked[0];
  return { colour: pick[0], share: Math.round((pick[1] / total) * 100) / 100 };
}

async function main() {
  const base = baseDir();
  const meta = readMeta(base);
  const crops = listFiles(join(base, 'in', 'data')).filter((f) => f.startsWith('crops/'));
  if (crops.length !== 1)
    throw new UsageError(`the event must carry one crop under crops/, it carries ${crops.length}`);
  const { colour, share } = await dominantColour(join(base, 'in', 'data', crops[0]));
  const object = {
    label: meta.get('label') ?? 'unknown',
    colour,
    colour_share: share,
    score: meta.get('score') ?? '',
    video: meta.get('video') ?? 'unknown',
    time: meta.get('time') ?? '',
    frame: meta.get('frame') ?? '',
    box: meta.get('box') ?? '',
  };
  console.log(
    `colour: ${object.video} t=${object.time}s ${object.label} [${object.box}]: ${colour} (${share})`,
  );
  writeFileSync(join(base, 'out', 'insights.json'), JSON.stringify(kv(object), null, 2) + '\n');
  return 0;
}

await serve(guarded('colour', main));
