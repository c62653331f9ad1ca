import type { TraceView, EventView } from '../api/client.js';
import { formatDuration } from '../core/duration.js';
import type { Job } from '../core/types.js';

/**
 * Fixed-width table for human output. A cell is one line: line breaks in a value (a dead
 * letter's reason, an attempt's error) are shown as spaces so they cannot break the columns.
 */
export function table(headers: string[], cells: string[][]): string {
  const rows = cells.map((row) => row.map((c) => c.replace(/\s*[\r\n]+\s*/g, ' ')));
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

export function jobDuration(job: Job): string {
  if (job.finishedAt === null) return '-';
  return formatDuration(Date.parse(job.finishedAt) - Date.parse(job.createdAt));
}

function eventLine(event: EventView): string {
  const meta = Object.entries(event.data).map(
    ([k, v]) => `${k}=${v.length > 40 ? `${v.slice(0, 37)}...` : v}`,
  );
  return `event ${event.type} ${event.eventId}${meta.length > 0 ? `  {${meta.join(', ')}}` : ''}`;
}

/**
 * Renders a trace as a tree: each event, the jobs it triggered (module, state, attempts,
 * duration, insights), and under each job the events it raised, recursively.
 */
export function renderTrace(trace: TraceView): string {
  const childrenOf = new Map<string, EventView[]>();
  const roots: EventView[] = [];
  for (const event of trace.events) {
    if (event.sourceJobId === null) roots.push(event);
    else childrenOf.set(event.sourceJobId, [...(childrenOf.get(event.sourceJobId) ?? []), event]);
  }
  const jobsOf = new Map<string, Job[]>();
  for (const job of trace.jobs) jobsOf.set(job.eventId, [...(jobsOf.get(job.eventId) ?? []), job]);
  const insightsOf = new Map<string, string[]>();
  for (const i of trace.insights)
    insightsOf.set(i.jobId, [...(insightsOf.get(i.jobId) ?? []), `${i.key}=${i.value}`]);

  const out: string[] = [`trace ${trace.correlationId}`];
  const walkEvent = (event: EventView, prefix: string, last: boolean): void => {
    out.push(`${prefix}${last ? '└─ ' : '├─ '}${eventLine(event)}`);
    const inner = prefix + (last ? '   ' : '│  ');
    const files = event.files.map((f) => `file ${f.path} (${f.size} B)`);
    const jobs = jobsOf.get(event.eventId) ?? [];
    const total = files.length + jobs.length;
    let index = 0;
    for (const f of files) {
      index += 1;
      out.push(`${inner}${index === total ? '└─ ' : '├─ '}${f}`);
    }
    for (const job of jobs) {
      index += 1;
      walkJob(job, inner, index === total);
    }
  };
  const walkJob = (job: Job, prefix: string, last: boolean): void => {
    const error =
      job.lastError !== null && job.state !== 'succeeded' ? `  error: ${job.lastError}` : '';
    out.push(
      `${prefix}${last ? '└─ ' : '├─ '}job ${job.module} [${job.state}]${job.replayId ? ` replay=${job.replayId}` : ''} attempts=${job.attempts} duration=${jobDuration(job)}${error}`,
    );
    const inner = prefix + (last ? '   ' : '│  ');
    const insights = insightsOf.get(job.jobId) ?? [];
    const children = childrenOf.get(job.jobId) ?? [];
    const outputs = job.outputs ?? [];
    const lines: string[] = [];
    if (outputs.length > 0) {
      const shown = outputs.slice(0, 5).map((f) => f.path);
      lines.push(
        `outputs ${shown.join(', ')}${outputs.length > shown.length ? ` and ${outputs.length - shown.length} more` : ''}`,
      );
    }
    if (insights.length > 0) lines.push(`insights ${insights.join(', ')}`);
    const total = lines.length + children.length;
    let index = 0;
    for (const line of lines) {
      index += 1;
      out.push(`${inner}${index === total ? '└─ ' : '├─ '}${line}`);
    }
    for (const child of children) {
      index += 1;
      walkEvent(child, inner, index === total);
    }
  };
  roots.forEach((root, i) => walkEvent(root, '', i === roots.length - 1));
  return out.join('\n');
}

/** Counts jobs by state: `3 succeeded, 1 running`. */
export function summariseJobs(jobs: Job[]): string {
  const counts = new Map<string, number>();
  for (const job of jobs) counts.set(job.state, (counts.get(job.state) ?? 0) + 1);
  return [...counts].map(([state, n]) => `${n} ${state}`).join(', ') || 'no jobs';
}

/** Bytes for people: `512 B`, `1.5 KiB`, `12.0 MiB`, `3.2 GiB` (binary units). */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${Math.round(bytes)} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

/** One line of transfer progress: `notes.bin  12.0 MiB / 100.0 MiB  12%  4.0 MiB/s`. */
export function formatProgress(p: {
  label: string;
  sent: number;
  total: number;
  elapsedMs: number;
}): string {
  // Floored, so 100% means every byte went; a file that grew while read stays at 100%.
  const percent = p.total <= 0 ? 100 : Math.min(100, Math.floor((p.sent * 100) / p.total));
  const rate = p.elapsedMs > 0 ? `${formatBytes((p.sent * 1000) / p.elapsedMs)}/s` : '-';
  return `${p.label}  ${formatBytes(p.sent)} / ${formatBytes(p.total)}  ${percent}%  ${rate}`;
}

/** A progress line on a terminal: redrawn in place, at most every `intervalMs`. */
export interface ProgressLine {
  update(sent: number, total: number): void;
  /** Draws the last state (even if throttled away) and ends the line. Idempotent. */
  done(): void;
}

/**
 * A throttled progress line written with `write` (stderr in the CLI): the first update and
 * then at most one every `intervalMs` (default 250 ms, four a second) are drawn, each over
 * the previous one (`\r`, then clear to the end of the line); `done()` ends it with a newline.
 * The clock is injectable so the throttle is tested without waiting.
 */
export function progressLine(options: {
  label: string;
  /** The size expected, shown until the first update says otherwise. */
  total?: number;
  write: (text: string) => void;
  now?: () => number;
  intervalMs?: number;
}): ProgressLine {
  const now = options.now ?? Date.now;
  const intervalMs = options.intervalMs ?? 250;
  const startedAt = now();
  let drawnAt: number | null = null;
  let state = { sent: 0, total: options.total ?? 0 };
  let finished = false;
  const draw = (at: number) => {
    drawnAt = at;
    const line = formatProgress({ label: options.label, ...state, elapsedMs: at - startedAt });
    options.write(`\r${line}\x1b[K`);
  };
  return {
    update(sent, total) {
      if (finished) return;
      state = { sent, total };
      const at = now();
      if (drawnAt === null || at - drawnAt >= intervalMs) draw(at);
    },
    done() {
      if (finished) return;
      finished = true;
      draw(now());
      options.write('\n');
    },
  };
}
