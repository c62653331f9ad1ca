import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { check, pendingWork, snapshot } from './checker.js';
import { faultKinds, runFaults } from './faults.js';
import { Api, runLoad, startProber } from './load.js';
import { writeSoakPipeline } from './pipeline.js';
import { sleep } from './procs.js';
import { Rng } from './rng.js';
import { applyPipeline, startSetup, type Setup, type SetupName } from './setups.js';
import type { SetupResult } from './summary.js';

export interface SoakOptions {
  setup: SetupName;
  seconds: number;
  seed: number;
  /** Root events per second. */
  rate: number;
  /** Only these fault kinds (default: every kind the set-up can inject). */
  kinds?: string[];
  /** Bound on the drain after the load stops. */
  drainMs?: number;
  log?: (line: string) => void;
}

function selectKinds<T>(all: Map<string, T>, wanted: string[] | undefined): Map<string, T> {
  if (wanted === undefined) return all;
  return new Map([...all].filter(([kind]) => wanted.includes(kind)));
}

/** Waits until every tree has ended and the outbox is empty, or the deadline. */
async function drain(setup: Setup, deadline: number, log: (l: string) => void): Promise<void> {
  let last = '';
  while (Date.now() < deadline) {
    const store = await setup.openStore();
    try {
      const s = await snapshot(store);
      const { missingJobs, unended } = pendingWork(s);
      const state = `${missingJobs.length} jobs not created, ${unended.length} not ended, ${s.unpublished} outbox rows`;
      if (missingJobs.length === 0 && unended.length === 0 && s.unpublished === 0) return;
      if (state !== last) log(`draining: ${state}`);
      last = state;
    } catch (err) {
      log(`draining: store not readable yet (${(err as Error).message})`);
    } finally {
      await store.close().catch(() => undefined);
    }
    await sleep(2000);
  }
  log(`drain deadline passed: ${last}`);
}

/** Runs one set-up's soak end to end and checks it. Never throws for a violation: reports it. */
export async function runSoak(options: SoakOptions): Promise<SetupResult> {
  const log =
    options.log ??
    ((line: string) => console.log(`${new Date().toISOString()} [${options.setup}] ${line}`));
  const started = Date.now();
  const setup = await startSetup(options.setup);
  log(`up at ${setup.url}, working in ${setup.root}`);
  // Ctrl-C or a kill of the soak: stop what it started (processes, mounts, schema) first.
  const onSignal = (signal: NodeJS.Signals): void => {
    log(`${signal}: stopping and cleaning up`);
    void setup
      .stopIon()
      .catch(() => undefined)
      .then(() => setup.dispose())
      .finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const pipeline = await writeSoakPipeline(setup.root, setup.markers);
    await applyPipeline(setup, pipeline);
    const api = new Api(setup.url, setup.token);
    const prober = startProber(api);
    const rng = new Rng(options.seed);
    const faultRng = new Rng(options.seed ^ 0x5eed);
    const endAt = Date.now() + options.seconds * 1000;
    const [load, faults] = await Promise.all([
      runLoad(api, rng, { seed: options.seed, rate: options.rate, endAt, graceMs: 120_000 }),
      runFaults(api, selectKinds(faultKinds(setup, api, options.seed), options.kinds), faultRng, {
        seed: options.seed,
        startAt: Date.now() + 5_000,
        endAt,
        recoveryMs: 180_000,
        log,
      }),
    ]);
    log(
      `load done: ${load.accepted.length} roots accepted, ${load.unacknowledged.length} never acknowledged, ${faults.length} faults`,
    );
    await drain(setup, Date.now() + (options.drainMs ?? 300_000), log);
    await prober.stop();
    await setup.stopIon();
    const store = await setup.openStore();
    let report;
    try {
      report = await check(setup, await snapshot(store), load, faults, api.samples);
    } finally {
      await store.close();
    }
    const statuses: Record<string, number> = {};
    for (const s of api.samples) {
      const key = s.status === 0 ? 'refused' : s.status === -1 ? 'hang' : String(s.status);
      statuses[key] = (statuses[key] ?? 0) + 1;
    }
    const result: SetupResult = {
      setup: setup.name,
      seconds: options.seconds,
      seed: options.seed,
      load,
      faults,
      unavailable: setup.unavailable,
      report,
      statuses,
    };
    const out = process.env.SOAK_OUT ?? join(tmpdir(), 'ion-soak-results');
    await mkdir(out, { recursive: true }).catch(() => undefined);
    await writeFile(
      join(out, `${setup.name}-${options.seed}.json`),
      JSON.stringify(
        { ...result, unavailable: [...setup.unavailable], samples: api.samples.length },
        null,
        2,
      ),
    ).catch(() => undefined);
    for (const note of setup.notes()) log(`emulator: ${note}`);
    for (const v of report.violations.slice(0, 50)) log(`VIOLATION ${v}`);
    log(
      `checked in ${Math.round((Date.now() - started) / 1000)} s: ${report.violations.length} violations`,
    );
    return result;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await setup.stopIon().catch(() => undefined);
    if (process.env.SOAK_KEEP !== '1') await setup.dispose();
    else log(`kept ${setup.root}`);
  }
}
