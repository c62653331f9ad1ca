import { describe, expect, it } from 'vitest';
import { runSoak } from '../../soak/soak.js';
import type { SetupResult } from '../../soak/summary.js';

// A short soak per set-up (issue 12): real `ion` processes under a steady load with faults on a
// fixed seed, then the independent invariant checker (soak/checker.ts). Only invariants are
// asserted, never timings: a loaded machine makes the run slower, not different.
//
// Every fault kind of the set-up is in, but for the distributed `blob-fs-full`: s3rver itself
// does not survive a full disk (docs/reliability.md), so that kind would test the emulator.
// Kinds come in a seeded order, every kind once before any repeats; under load a minute may
// not reach the last ones, so the test asserts what was injected, not that all were.

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
    'embedded: no event lost, no effect duplicated, the API never answers 500 or hangs, through kills, a full disk and module faults',
    { timeout: 420_000 },
    async () => {
      const result = await runSoak({
        setup: 'embedded',
        seconds: 60,
        seed: 12,
        rate: 0.7,
        kinds: [
          'kill-ion-up',
          'kill-module-group',
          'kill-spawn-launcher',
          'blob-fs-full',
          'module-never-exits',
        ],
        drainMs: 240_000,
        log: () => undefined,
      });
      expectClean(result);
    },
  );

  it(
    'distributed: no event lost, no effect duplicated through server and worker kills, a NATS restart and a PostgreSQL cut',
    { timeout: 480_000 },
    async () => {
      const result = await runSoak({
        setup: 'distributed',
        seconds: 60,
        seed: 12,
        rate: 0.7,
        kinds: [
          'kill-server',
          'kill-worker',
          'nats-restart',
          'postgres-cut',
          'kill-spawn-launcher',
        ],
        drainMs: 240_000,
        log: () => undefined,
      });
      expectClean(result);
    },
  );
});
