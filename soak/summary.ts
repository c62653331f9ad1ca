import type { CheckReport } from './checker.js';
import type { FaultRecord } from './faults.js';
import type { LoadResult } from './load.js';

/** What one set-up's soak produced, for the table. */
export interface SetupResult {
  setup: string;
  seconds: number;
  seed: number;
  load: LoadResult;
  faults: FaultRecord[];
  unavailable: Map<string, string>;
  report: CheckReport;
  /** Status counts of every API answer seen (probes and load) while faults ran. */
  statuses: Record<string, number>;
}

function percentile(values: number[], p: number): number | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

const secs = (ms: number | undefined): string =>
  ms === undefined ? '-' : `${(ms / 1000).toFixed(1)} s`;

/**
 * Recovery: from the end of the fault (service restored, process restarted and ready) until a
 * canary event published after it has its job succeeded. Outage: from the injection until
 * that canary succeeded (for a SIGKILL, includes the restart).
 */

/** The summary as Markdown tables (printed by the soak, pasted into docs/reliability.md). */
export function summaryTable(results: SetupResult[]): string {
  const lines: string[] = [];
  lines.push(
    '| set-up | seconds | seed | roots accepted | events stored | jobs run | attempts | blobs checked | events lost | duplicate effects | overlapping runs | violations |',
  );
  lines.push(
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  );
  for (const r of results)
    lines.push(
      `| ${r.setup} | ${r.seconds} | ${r.seed} | ${r.load.accepted.length} | ${r.report.events} | ${r.report.jobsRun} | ${r.report.attemptsRun} | ${r.report.blobsChecked} | ${r.report.eventsLost} | ${r.report.duplicateEffects} | ${String((r.report as { overlappingRuns?: number }).overlappingRuns ?? '-')} | ${r.report.violations.length} |`,
    );
  lines.push('');
  lines.push(
    '| set-up | fault kind | injected | recovered | recovery p50 | recovery max | outage p50 | outage max | note |',
  );
  lines.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const r of results) {
    const kinds = new Map<string, FaultRecord[]>();
    for (const f of r.faults) kinds.set(f.kind, [...(kinds.get(f.kind) ?? []), f]);
    for (const [kind, fs] of [...kinds].sort(([a], [b]) => a.localeCompare(b))) {
      const rec = fs
        .filter((f) => f.recoveredAt !== undefined)
        .map((f) => f.recoveredAt! - f.restoredAt);
      const outage = fs
        .filter((f) => f.recoveredAt !== undefined)
        .map((f) => f.recoveredAt! - f.injectedAt);
      const note = fs.find((f) => f.error !== undefined)?.error ?? '';
      lines.push(
        `| ${r.setup} | ${kind} | ${fs.length} | ${rec.length} | ${secs(percentile(rec, 50))} | ${secs(percentile(rec, 100))} | ${secs(percentile(outage, 50))} | ${secs(percentile(outage, 100))} | ${note.slice(0, 80)} |`,
      );
    }
    for (const [kind, why] of r.unavailable)
      lines.push(`| ${r.setup} | ${kind} | 0 | - | - | - | not injected: ${why.slice(0, 120)} |`);
  }
  lines.push('');
  lines.push('| set-up | bad input (class) | tried | outcome |');
  lines.push('| --- | --- | ---: | --- |');
  for (const r of results) {
    for (const [cls, outcomes] of Object.entries(r.report.outcomes).sort(([a], [b]) =>
      a.localeCompare(b),
    )) {
      const total = Object.values(outcomes).reduce((a, b) => a + b, 0);
      const text = Object.entries(outcomes)
        .map(([o, n]) => `${o}: ${n}`)
        .join(', ');
      lines.push(`| ${r.setup} | ${cls} | ${total} | ${text} |`);
    }
    for (const [cls, c] of Object.entries(r.load.badRequests))
      if (c.tried > 0)
        lines.push(
          `| ${r.setup} | request: ${cls} | ${c.tried} | 4xx with error body: ${c.refused4xx}, API down (refused/503): ${c.unavailable}, other: ${c.other} |`,
        );
  }
  lines.push('');
  lines.push('| set-up | API answers seen (probes + load) |');
  lines.push('| --- | --- |');
  for (const r of results)
    lines.push(
      `| ${r.setup} | ${Object.entries(r.statuses)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([s, n]) => `${s}: ${n}`)
        .join(', ')} |`,
    );
  return lines.join('\n');
}
