import { describe, expect, it } from 'vitest';
import type { EventView, TraceView } from '../api/client.js';
import type { Insight, Job } from '../core/types.js';
import {
  formatBytes,
  formatProgress,
  progressLine,
  renderTrace,
  summariseJobs,
  table,
} from './render.js';

const T0 = '2024-01-01T00:00:00.000Z';

function ev(
  eventId: string,
  type: string,
  sourceJobId: string | null,
  extra: Partial<EventView> = {},
): EventView {
  return {
    eventId,
    type,
    correlationId: 'root-1',
    parentEventId: null,
    source: sourceJobId === null ? 'api' : 'mod',
    sourceJobId,
    data: {},
    metadata: [],
    files: [],
    createdAt: T0,
    ...extra,
  };
}

function job(jobId: string, module: string, eventId: string, extra: Partial<Job> = {}): Job {
  return {
    jobId,
    module,
    moduleVersion: 1,
    eventId,
    correlationId: 'root-1',
    state: 'succeeded',
    attempts: 1,
    createdAt: T0,
    updatedAt: T0,
    finishedAt: '2024-01-01T00:00:01.500Z',
    lastError: null,
    outputs: [],
    replayId: null,
    replayOf: null,
    pinnedVersion: null,
    cancelRequestedAt: null,
    ...extra,
  };
}

function insight(jobId: string, key: string, value: string): Insight {
  return { jobId, module: 'm', eventId: 'e', correlationId: 'root-1', key, value, createdAt: T0 };
}

/**
 * root (file.uploaded, one file)
 *   ├─ job split (succeeded, insight parts=2)
 *   │    ├─ child-a (part.ready) → job ocr (dead_lettered, error)
 *   │    └─ child-b (part.ready) → job ocr (running)
 *   └─ job audit (failed, error)
 */
function sampleTrace(): TraceView {
  return {
    correlationId: 'root-1',
    events: [
      ev('root-1', 'file.uploaded', null, {
        data: { source: 'scanner', long: 'x'.repeat(60) },
        files: [{ path: 'scans/page.pdf', sha256: 'a'.repeat(64), size: 2048 }],
      }),
      ev('child-a', 'part.ready', 'job-split', { parentEventId: 'root-1', data: { part: '1' } }),
      ev('child-b', 'part.ready', 'job-split', { parentEventId: 'root-1', data: { part: '2' } }),
    ],
    jobs: [
      job('job-split', 'split', 'root-1'),
      job('job-audit', 'audit', 'root-1', {
        state: 'failed',
        attempts: 2,
        lastError: 'exit code 3',
      }),
      job('job-ocr-a', 'ocr', 'child-a', {
        state: 'dead_lettered',
        attempts: 4,
        lastError: 'module timed out',
      }),
      job('job-ocr-b', 'ocr', 'child-b', { state: 'running', finishedAt: null }),
    ],
    insights: [
      insight('job-split', 'parts', '2'),
      insight('job-split', 'pages', '7'),
      insight('job-ocr-a', 'lang', 'en'),
    ],
  };
}

/** The indentation depth of a tree line: the column where its branch marker starts, in 3-char steps. */
function depth(line: string): number {
  const at = line.search(/[├└]─ /);
  return at / 3;
}

function lineWith(lines: string[], ...parts: string[]): { index: number; line: string } {
  const index = lines.findIndex((l) => parts.every((p) => l.includes(p)));
  if (index < 0) throw new Error(`no line with ${parts.join(' + ')} in:\n${lines.join('\n')}`);
  return { index, line: lines[index]! };
}

describe('renderTrace', () => {
  it('starts with the correlation id', () => {
    expect(renderTrace(sampleTrace()).split('\n')[0]).toBe('trace root-1');
  });

  it('nests jobs under the event that triggered them and raised events under their job', () => {
    const lines = renderTrace(sampleTrace()).split('\n');
    const root = lineWith(lines, 'event file.uploaded root-1');
    const split = lineWith(lines, 'job split');
    const audit = lineWith(lines, 'job audit');
    const childA = lineWith(lines, 'event part.ready child-a');
    const childB = lineWith(lines, 'event part.ready child-b');
    const ocrA = lineWith(lines, 'job ocr', '[dead_lettered]');
    const ocrB = lineWith(lines, 'job ocr', '[running]');

    expect(depth(root.line)).toBe(0);
    expect(depth(split.line)).toBe(1);
    expect(depth(audit.line)).toBe(1);
    expect(depth(childA.line)).toBe(2);
    expect(depth(childB.line)).toBe(2);
    expect(depth(ocrA.line)).toBe(3);
    expect(depth(ocrB.line)).toBe(3);

    expect(split.index).toBeGreaterThan(root.index);
    expect(childA.index).toBeGreaterThan(split.index);
    expect(ocrA.index).toBe(childA.index + 1);
    expect(childB.index).toBeGreaterThan(ocrA.index);
    expect(ocrB.index).toBe(childB.index + 1);
    expect(audit.index).toBeGreaterThan(ocrB.index);
  });

  it('shows each job state, attempts and duration, and the error only for unsuccessful jobs', () => {
    const lines = renderTrace(sampleTrace()).split('\n');
    expect(lineWith(lines, 'job split').line).toContain('[succeeded] attempts=1 duration=1.50s');
    expect(lineWith(lines, 'job split').line).not.toContain('error');
    expect(lineWith(lines, 'job audit').line).toContain('[failed] attempts=2');
    expect(lineWith(lines, 'job audit').line).toContain('error: exit code 3');
    expect(lineWith(lines, 'job ocr', '[running]').line).toContain('duration=-');
    expect(lineWith(lines, '[dead_lettered]').line).toContain('error: module timed out');
  });

  it('marks a replayed job with its replay id, beside the original job of the same event', () => {
    const trace = sampleTrace();
    trace.jobs.push(job('job-split-2', 'split', 'root-1', { replayId: 'rp-1' }));
    const lines = renderTrace(trace).split('\n');
    expect(lineWith(lines, 'job split', 'replay=rp-1').line).toContain('[succeeded]');
    expect(lineWith(lines, 'job split [succeeded] attempts').line).not.toContain('replay=');
  });

  it("lists a job's insights directly under it", () => {
    const lines = renderTrace(sampleTrace()).split('\n');
    const split = lineWith(lines, 'job split');
    const insights = lineWith(lines, 'insights parts=2, pages=7');
    expect(insights.index).toBe(split.index + 1);
    expect(depth(insights.line)).toBe(depth(split.line) + 1);
    const lang = lineWith(lines, 'insights lang=en');
    expect(lang.index).toBe(lineWith(lines, '[dead_lettered]').index + 1);
  });

  it("lists an event's files under it with their size", () => {
    const lines = renderTrace(sampleTrace()).split('\n');
    const file = lineWith(lines, 'file scans/page.pdf (2048 B)');
    expect(file.index).toBe(lineWith(lines, 'event file.uploaded').index + 1);
    expect(depth(file.line)).toBe(1);
  });

  it('shows metadata beside the event and shortens long values', () => {
    const lines = renderTrace(sampleTrace()).split('\n');
    const root = lineWith(lines, 'event file.uploaded').line;
    expect(root).toContain('source=scanner');
    expect(root).toContain(`long=${'x'.repeat(37)}...`);
    expect(root).not.toContain('x'.repeat(38));
    expect(lineWith(lines, 'child-a').line).toContain('{part=1}');
  });

  it('closes the last branch of each level with └─ and draws │ for open ones', () => {
    const lines = renderTrace(sampleTrace()).split('\n');
    expect(lineWith(lines, 'event file.uploaded').line.startsWith('└─ ')).toBe(true);
    expect(lineWith(lines, 'job audit').line).toContain('└─ job audit');
    expect(lineWith(lines, 'job split').line).toContain('├─ job split');
    // lines below split but above audit hang off split's open branch
    expect(lineWith(lines, 'child-a').line.startsWith('   │  ')).toBe(true);
  });
});

describe('table and summariseJobs', () => {
  it('pads columns to the widest cell', () => {
    const out = table(
      ['NAME', 'STATE'],
      [
        ['a', 'succeeded'],
        ['longer-name', 'failed'],
      ],
    ).split('\n');
    expect(out[0]).toBe('NAME         STATE');
    expect(out[1]).toBe('a            succeeded');
    expect(out[2]).toBe('longer-name  failed');
  });

  it('keeps a cell with line breaks on one line, so the columns hold', () => {
    const out = table(
      ['ID', 'REASON'],
      [
        ['d1', 'module_output_invalid: invalid output:\n  events[0]: bad\r\n  x'],
        ['d2', 'short'],
      ],
    ).split('\n');
    expect(out).toEqual([
      'ID  REASON',
      'd1  module_output_invalid: invalid output: events[0]: bad x',
      'd2  short',
    ]);
  });

  it('counts jobs by state', () => {
    expect(summariseJobs(sampleTrace().jobs)).toBe(
      '1 succeeded, 1 failed, 1 dead_lettered, 1 running',
    );
    expect(summariseJobs([])).toBe('no jobs');
  });
});

describe('upload progress', () => {
  it('formats sizes in binary units', () => {
    expect(formatBytes(0)).toBe('0 B');
    expect(formatBytes(1023)).toBe('1023 B');
    expect(formatBytes(1536)).toBe('1.5 KiB');
    expect(formatBytes(12 * 1024 * 1024)).toBe('12.0 MiB');
    expect(formatBytes(3.25 * 1024 ** 3)).toBe('3.3 GiB');
  });

  it('formats sent / total, a floored percent and the rate', () => {
    const MiB = 1024 * 1024;
    expect(
      formatProgress({ label: 'up a.bin', sent: 12 * MiB, total: 100 * MiB, elapsedMs: 3000 }),
    ).toBe('up a.bin  12.0 MiB / 100.0 MiB  12%  4.0 MiB/s');
    // 99.9% is not done yet; an empty file is; no time elapsed has no rate.
    expect(formatProgress({ label: 'x', sent: 999, total: 1000, elapsedMs: 1000 })).toContain(
      ' 99% ',
    );
    expect(formatProgress({ label: 'x', sent: 0, total: 0, elapsedMs: 0 })).toBe(
      'x  0 B / 0 B  100%  -',
    );
  });

  it('draws the first update, then at most one per interval, and ends with the final state and a newline', () => {
    let clock = 1000;
    const writes: string[] = [];
    const line = progressLine({
      label: 'f',
      total: 400,
      write: (text) => writes.push(text),
      now: () => clock,
      intervalMs: 250,
    });
    line.update(100, 400); // drawn: the first
    clock += 100;
    line.update(200, 400); // throttled
    clock += 100;
    line.update(300, 400); // throttled (200 ms since the last draw)
    clock += 50;
    line.update(350, 400); // drawn: 250 ms since the last draw
    clock += 10;
    line.update(400, 400); // throttled, but done() shows it
    line.done();
    line.done(); // idempotent
    line.update(400, 400); // after done: nothing
    expect(writes).toEqual([
      '\rf  100 B / 400 B  25%  -\x1b[K',
      '\rf  350 B / 400 B  87%  1.4 KiB/s\x1b[K',
      '\rf  400 B / 400 B  100%  1.5 KiB/s\x1b[K',
      '\n',
    ]);
  });

  it('ends the line showing the expected size when no byte was sent', () => {
    const writes: string[] = [];
    const line = progressLine({
      label: 'f',
      total: 2048,
      write: (t) => writes.push(t),
      now: () => 0,
    });
    line.done();
    expect(writes).toEqual(['\rf  0 B / 2.0 KiB  0%  -\x1b[K', '\n']);
  });
});
