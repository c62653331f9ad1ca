#!/usr/bin/env node
// Ion example module `summary`: the fan-in. Once every job of a video's trace has ended, Ion
// raises one `ion.trace.settled` event (docs/pipeline.md) carrying the trace as
// in/data/trace.json; this lists what was seen in the video.
//
// Subscribes to: ion.trace.settled      Publishes: nothing
//
// Output: out/data/summary.json ({video, frames, objects, labels: {label: {count, colours,
// first, last}}, failed, reason}) and out/data/summary.txt (one line per label).
// Insights: video, frames, objects, labels ("car,motorcycle"), one `seen` per label
// ("motorcycle: 2 (red 2) at 0.000-1.000 s"), failed_jobs, and `reason` when nothing could
// be seen (the video failed, or had no frames).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { baseDir, guarded, readMeta, UsageError } from './lib.mjs';

function main() {
  const base = baseDir();
  const meta = readMeta(base);
  let trace;
  try {
    trace = JSON.parse(readFileSync(join(base, 'in', 'data', 'trace.json'), 'utf8'));
  } catch (err) {
    throw new UsageError(
      `in/data/trace.json is missing or not JSON (${err.message}): subscribe this module to ion.trace.settled`,
    );
  }
  // Insights grouped per job: one colour job = one object.
  const byJob = new Map();
  for (const i of trace.insights ?? []) {
    if (!byJob.has(i.jobId)) byJob.set(i.jobId, { module: i.module });
    byJob.get(i.jobId)[i.key] = i.value;
  }
  const jobs = [...byJob.values()];
  const framesJob = jobs.find((j) => j.module === 'frames');
  const video =
    meta.get('video') ?? framesJob?.video ?? trace.events?.[0]?.files?.[0]?.path ?? 'unknown';
  const labels = {};
  let objects = 0;
  for (const o of jobs.filter((j) => j.module === 'colour')) {
    objects += 1;
    const t = Number(o.time);
    const entry = (labels[o.label] ??= { count: 0, colours: {}, first: t, last: t, best: 0 });
    entry.count += 1;
    entry.colours[o.colour] = (entry.colours[o.colour] ?? 0) + 1;
    entry.first = Math.min(entry.first, t);
    entry.last = Math.max(entry.last, t);
    entry.best = Math.max(entry.best, Number(o.score) || 0);
  }
  const failed = (trace.jobs ?? []).filter((j) => j.state !== 'succeeded');
  let reason = '';
  const framesFailed = failed.find((j) => j.module === 'frames');
  if (framesFailed) reason = `frames failed: ${framesFailed.lastError ?? 'see its log'}`;
  else if (framesJob && framesJob.frames === '0')
    reason = `no frames: ${framesJob.reason ?? 'the video has no frame'}`;
  else if (objects === 0) reason = 'no object detected';
  const summary = {
    video,
    correlationId: trace.correlationId,
    frames: framesJob ? Number(framesJob.frames) : 0,
    objects,
    labels,
    failedJobs: failed.map((j) => ({
      module: j.module,
      state: j.state,
      error: j.lastError ?? null,
    })),
    ...(reason ? { reason } : {}),
  };
  const order = Object.entries(labels).sort(
    (a, b) => b[1].count - a[1].count || (a[0] < b[0] ? -1 : 1),
  );
  const seen = order.map(([label, e]) => {
    const colours = Object.entries(e.colours)
      .sort((a, b) => b[1] - a[1])
      .map(([c, n]) => `${c} ${n}`)
      .join(', ');
    return `${label}: ${e.count} (${colours}) at ${e.first.toFixed(3)}-${e.last.toFixed(3)} s`;
  });
  mkdirSync(join(base, 'out', 'data'), { recursive: true });
  writeFileSync(join(base, 'out', 'data', 'summary.json'), JSON.stringify(summary, null, 2) + '\n');
  const text =
    [
      `${video}: ${summary.frames} frames, ${objects} objects${reason ? ` (${reason})` : ''}`,
      ...seen.map((s) => `  ${s}`),
    ].join('\n') + '\n';
  writeFileSync(join(base, 'out', 'data', 'summary.txt'), text);
  process.stdout.write(text);
  const insights = [
    { key: 'video', value: video },
    { key: 'frames', value: String(summary.frames) },
    { key: 'objects', value: String(objects) },
    { key: 'labels', value: order.map(([l]) => l).join(',') },
    ...seen.map((value) => ({ key: 'seen', value })),
    { key: 'failed_jobs', value: String(failed.length) },
    ...(reason ? [{ key: 'reason', value: reason }] : []),
  ];
  writeFileSync(join(base, 'out', 'insights.json'), JSON.stringify(insights, null, 2) + '\n');
  return 0;
}

process.exitCode = await guarded('summary', main)();
