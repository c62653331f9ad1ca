/** Small helpers shared by the bench suites (bench/backends.ts, bench/large.ts). */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

export function intEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`${name} must be a positive integer, got "${raw}"`);
  return n;
}

export const wallMs = (): number => performance.timeOrigin + performance.now();
export const nsToMs = (ns: string): number => Number(BigInt(ns) / 1000n) / 1000;
export const MIB = 1024 * 1024;

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[
    Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  ]!;
}

export const f = (n: number, digits = 1): string =>
  Number.isFinite(n) ? n.toFixed(digits) : 'n/a';

export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  const line = (r: string[]): string =>
    `| ${r.map((cell, c) => cell.padEnd(widths[c]!)).join(' | ')} |`;
  return [
    line(rows[0]!),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...rows.slice(1).map(line),
  ].join('\n');
}

/** Samples this process's RSS every `everyMs` and keeps the peak since the last `reset()`. */
export class RssSampler {
  private peakBytes = process.memoryUsage().rss;
  private readonly timer: NodeJS.Timeout;

  constructor(everyMs = 50) {
    this.timer = setInterval(() => this.sample(), everyMs);
  }

  sample(): number {
    const rss = process.memoryUsage().rss;
    if (rss > this.peakBytes) this.peakBytes = rss;
    return rss;
  }

  /** Starts a new window; returns the RSS at its start. */
  reset(): number {
    this.peakBytes = process.memoryUsage().rss;
    return this.peakBytes;
  }

  /** Peak RSS of the window so far (after one last sample). */
  peak(): number {
    this.sample();
    return this.peakBytes;
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

/** Peak resident set (VmHWM) of another process, bytes; NaN when unreadable. */
export function peakRssOf(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? NaN : Number(m[1]) * 1024;
  } catch {
    return NaN;
  }
}

/** Pids of this process's direct children (Linux). */
export function childPids(): number[] {
  try {
    return readFileSync(`/proc/${process.pid}/task/${process.pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

/** Load average of the machine (1 minute), for the report. */
export function loadAverage(): string {
  try {
    return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  } catch {
    return '?';
  }
}
