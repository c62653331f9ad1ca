#!/usr/bin/env node
// Ion example module: count the words of a chunk.
//
// Uses the contract's JSON *object* event form (an extension):
//   {"eventType": "...", "files": ["..."], "data": {"k": "v"}}
// Insights stay in the original key/value array form (there is no other).
//
// Subscribes to: chunk.ready      Publishes: chunk.counted
//
// For every file in in/data/ (normally the one chunk, e.g. chunks/notes/ion/part-001.txt)
// it writes out/data/counts/<same subpath>.json (notes/ion/part-001.json) with the
// TOP_WORDS most frequent words (default 5; common English stop words are not ranked)
// and raises chunk.counted carrying that file and metadata document, part, words.
// Node.js built-ins only.

import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
// Warm-capable: run with `warm: true` (ion-warm.yaml), Ion's helper calls main() once per job
// in a long-lived process; run cold, it calls main() once and exits with its code.
import { serve } from '../../../sdk/node/ion-warm.mjs';

const STOP_WORDS = new Set(
  (
    'a an and are as at be but by can do for from has have he her his i if in into is it its ' +
    'me my no not of on or our she so than that the their them then there these they this ' +
    'to too up us was we were what when which while who will with you your'
  ).split(' '),
);
const WORD = /[\p{L}\p{N}]+(?:['’][\p{L}\p{N}]+)*/gu;

/** The triggering event's metadata as a Map (first occurrence of a key wins). */
function readMeta(base) {
  const file = join(base, 'in', 'eventmeta.json');
  const meta = new Map();
  if (!existsSync(file)) return meta;
  for (const { key, value } of JSON.parse(readFileSync(file, 'utf8'))) {
    if (!meta.has(key)) meta.set(key, String(value));
  }
  return meta;
}

/** Relative POSIX paths of every regular file under dir, sorted. */
function listFiles(dir, prefix = '') {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...listFiles(join(dir, entry.name), rel));
    else if (entry.isFile()) out.push(rel);
  }
  return out.sort();
}

function countWords(text, topN) {
  const counts = new Map();
  let total = 0;
  for (const match of text.toLowerCase().matchAll(WORD)) {
    total += 1;
    counts.set(match[0], (counts.get(match[0]) ?? 0) + 1);
  }
  const top = [...counts]
    .filter(([word]) => !STOP_WORDS.has(word))
    .sort(([a, x], [b, y]) => y - x || (a < b ? -1 : a > b ? 1 : 0))
    .slice(0, topN)
    .map(([word, count]) => ({ word, count }));
  return { total, unique: counts.size, top };
}

function main() {
  const base = process.env.HANDLER_BASE_DIR || process.env.ION_BASE_DIR || process.cwd();
  const inData = join(base, 'in', 'data');
  const outData = join(base, 'out', 'data');
  const outEvents = join(base, 'out', 'events');

  const topSetting = process.env.TOP_WORDS ?? '5';
  if (!/^[1-9][0-9]*$/.test(topSetting)) {
    console.error(
      `wordcount: TOP_WORDS must be a positive integer, got ${JSON.stringify(topSetting)}`,
    );
    return 2;
  }
  const topN = Number(topSetting);

  const meta = readMeta(base);
  const chunks = listFiles(inData);
  if (chunks.length === 0) {
    console.error('wordcount: the event carries no file to count');
    return 1;
  }

  mkdirSync(outEvents, { recursive: true });
  let totalWords = 0;
  let topWord = '';
  chunks.forEach((chunk, i) => {
    const { total, unique, top } = countWords(readFileSync(join(inData, chunk), 'utf8'), topN);
    const sub = chunk.replace(/^chunks\//, '').replace(/\.[^./]*$/, '');
    const countsPath = `counts/${sub}.json`;
    const document = meta.get('document') ?? chunk;
    const part = meta.get('part') ?? String(i + 1);

    mkdirSync(dirname(join(outData, countsPath)), { recursive: true });
    writeFileSync(
      join(outData, countsPath),
      JSON.stringify({ document, part, chunk, words: total, unique, top }, null, 2) + '\n',
    );
    const event = {
      eventType: 'chunk.counted',
      files: [countsPath],
      data: { document, part, words: String(total) },
    };
    writeFileSync(
      join(outEvents, `counted-${String(i + 1).padStart(3, '0')}.json`),
      JSON.stringify(event, null, 2) + '\n',
    );

    totalWords += total;
    if (!topWord && top.length > 0) topWord = top[0].word;
    console.log(`wordcount: ${chunk}: ${total} words, top: ${top.map((t) => t.word).join(', ')}`);
  });

  writeFileSync(
    join(base, 'out', 'insights.json'),
    JSON.stringify(
      [
        { key: 'words', value: String(totalWords) },
        { key: 'top_word', value: topWord },
      ],
      null,
      2,
    ) + '\n',
  );
  return 0;
}

serve(main);
