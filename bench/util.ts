/** Small helpers shared by the bench suites (bench/backends.ts, bench/large.ts). */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { IonApp } from '../src/app/ion-app.js';
import type { JobHost } from '../src/executors/job-host.js';
import { isHostFailure } from '../src/executors/job-hosts.js';

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

/** Blocking time of the embedded adapters' SQLite calls, summed per action. */
export type SqlTimes = Map<string, { ms: number; count: number }>;

/**
 * Wraps the embedded adapters' synchronous driver helpers from outside (src/ untouched), so
 * the event-loop time of each SQLite action is summed into `times`. Both SQLite adapters
 * funnel their driver calls through one private helper; the bus's claim (a write statement,
 * run on every wake-up and every 25 ms poll) bypasses it and is wrapped on its own.
 */
export function instrumentSqlite(backends: { store: object; bus: object }, times: SqlTimes): void {
  const timeSync = (target: object, method: string, key: (args: unknown[]) => string): void => {
    const holder = target as Record<string, (...args: unknown[]) => unknown>;
    const original = holder[method]!.bind(target);
    holder[method] = (...args: unknown[]) => {
      const t = performance.now();
      try {
        return original(...args);
      } finally {
        const k = key(args);
        const entry = times.get(k) ?? { ms: 0, count: 0 };
        entry.ms += performance.now() - t;
        entry.count += 1;
        times.set(k, entry);
      }
    };
  };
  timeSync(backends.store, 'attempt', (a) => `store ${String(a[0])}`);
  timeSync(backends.bus, 'run', (a) => `bus ${String(a[0])}`);
  timeSync(backends.bus, 'claim', () => 'bus claim (incl. empty polls)');
}

/**
 * The local job host of an app, started, so a bench can time its runs (prepare, the module
 * and collect) by wrapping its `run`.
 */
export async function localHost(app: IonApp): Promise<JobHost> {
  const host = await app.backends.jobHosts.host('local');
  if (isHostFailure(host)) throw new Error(host.message);
  return host;
}
