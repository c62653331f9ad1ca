import { describe, expect, it } from 'vitest';
import { runSoak } from '../../soak/soak.js';
import type { SetupResult } from '../../soak/summary.js';

// A short soak per set-up (issue 12): real `ion` processes under a steady load with faults on a
// fixed seed, then the independent invariant checker (soak/checker.ts). Only invariants are
// asserted, never timings: a loaded machine makes the run slower, not different.
//
// Fault kinds here are those that had no open defect when this test was written. The kill
// and disk-full faults' defects (files left after a SIGKILL, a 500 on a full disk, S3 answers
// trusted or awaited for ever) are fixed since (docs/reliability.md); they join this test
// once a full `npm run soak` confirms it.

function expectClean(result: SetupResult): void {
  const { report } = result;
  expect(report.violations, report.violations.join('\n')).toEqual([]);
  expect(report.eventsLost).toBe(0);
  expect(report.duplicateEffects).toBe(0);
  expect(result.load.accepted.length).toBeGreaterThan(0);
  expect(result.faults.length, 'at least one fault was injected').toBeGreaterThan(0);
  for (const f of result.faults) expect(f.recoveredAt, `${f.kind} recovered`).toBeDefined();
}

describe('soak', () => {
  it(
    'embedded: no event lost, no effect duplicated, the API never answers 500 or hangs, under module faults',
    { timeout: 420_000 },
    async () => {
      const result = await runSoak({
        setup: 'embedded',
        seconds: 30,
        seed: 12,
        rate: 0.7,
        kinds: ['kill-module-group', 'kill-spawn-launcher', 'module-never-exits'],
        drainMs: 240_000,
        log: () => undefined,
      });
      expectClean(result);
    },
  );

  it(
    'distributed: no event lost, no effect duplicated through a NATS restart and a PostgreSQL cut',
    { timeout: 480_000 },
    async () => {
      const result = await runSoak({
        setup: 'distributed',
        seconds: 30,
        seed: 12,
        rate: 0.7,
        kinds: ['nats-restart', 'postgres-cut'],
        drainMs: 240_000,
        log: () => undefined,
      });
      expectClean(result);
    },
  );
});
