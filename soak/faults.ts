import type { Api } from './load.js';
import { MODULES } from './pipeline.js';
import { sleep } from './procs.js';
import type { Rng } from './rng.js';
import type { FaultAction, Setup } from './setups.js';

/**
 * The fault schedule: one fault at a time, kinds in a seeded order (every kind once before
 * any repeats), each held for a seeded 2-5 s, then restored; after each, a canary event
 * measures how long the whole path (API, bus, dispatcher, store) took to work again.
 */

export interface FaultRecord {
  kind: string;
  note: string;
  injectedAt: number;
  restoredAt: number;
  /** When the canary published after the restore had its job succeeded (undefined: never). */
  recoveredAt?: number;
  /** The canary's root event (for the checker to include). */
  canaryEventId?: string;
  error?: string;
}

/** Publishes an event of `type` until accepted (or `deadline`); returns its id. */
export async function publishUntilAccepted(
  api: Api,
  type: string,
  key: string,
  deadline: number,
): Promise<string | undefined> {
  while (Date.now() < deadline) {
    const r = await api.call(`publish:${type}`, 'POST', '/v1/events', {
      body: JSON.stringify({ type }),
      headers: { 'content-type': 'application/json', 'idempotency-key': key },
    });
    if (r.status === 201 || r.status === 200) return (r.body as { eventId: string }).eventId;
    await sleep(500);
  }
  return undefined;
}

/** Waits until the job of `module` on `eventId` succeeded; returns when, or undefined. */
async function waitSucceeded(
  api: Api,
  eventId: string,
  deadline: number,
): Promise<number | undefined> {
  while (Date.now() < deadline) {
    const r = await api.call('canary-trace', 'GET', `/v1/traces/${eventId}`);
    const jobs = (r.body as { jobs?: { module: string; state: string }[] } | undefined)?.jobs;
    if (
      r.status === 200 &&
      jobs?.some((j) => j.module === MODULES.canary && j.state === 'succeeded')
    )
      return Date.now();
    await sleep(250);
  }
  return undefined;
}

/** Faults that need no backend access: a hanging module and a flooding one, by publishing. */
function publishFault(api: Api, type: string, seed: number): FaultAction {
  let n = 0;
  return {
    async inject() {
      n += 1;
      const id = await publishUntilAccepted(
        api,
        type,
        `soak-${seed}-${type}-${n}`,
        Date.now() + 60_000,
      );
      return id === undefined ? `${type} never accepted` : `published ${type} ${id}`;
    },
    restore: async () => {},
  };
}

/** Every fault kind this set-up can inject. */
export function faultKinds(setup: Setup, api: Api, seed: number): Map<string, FaultAction> {
  const all = new Map(setup.faults);
  all.set('module-never-exits', publishFault(api, 'soak.hang', seed));
  all.set('module-floods-output', publishFault(api, 'soak.flood', seed));
  return all;
}

/**
 * Injects faults until `endAt` (none starts later than `endAt - 10 s`); returns the records.
 * `recoveryMs` bounds the wait for each canary.
 */
export async function runFaults(
  api: Api,
  kinds: Map<string, FaultAction>,
  rng: Rng,
  options: {
    seed: number;
    startAt: number;
    endAt: number;
    recoveryMs: number;
    log(line: string): void;
  },
): Promise<FaultRecord[]> {
  const records: FaultRecord[] = [];
  let order: string[] = [];
  await sleep(Math.max(0, options.startAt - Date.now()));
  let n = 0;
  while (Date.now() < options.endAt - 10_000) {
    if (order.length === 0) order = rng.shuffle([...kinds.keys()]);
    const kind = order.shift()!;
    const action = kinds.get(kind)!;
    const holdMs = rng.int(2000, 5000);
    const record: FaultRecord = { kind, note: '', injectedAt: Date.now(), restoredAt: 0 };
    records.push(record);
    try {
      record.note = await action.inject(rng);
      options.log(
        `fault ${kind} injected at ${new Date(record.injectedAt).toISOString()}: ${record.note}`,
      );
      await sleep(holdMs);
      await action.restore();
      record.restoredAt = Date.now();
      options.log(`fault ${kind} restored at ${new Date(record.restoredAt).toISOString()}`);
    } catch (err) {
      record.error = (err as Error).message;
      record.restoredAt = Date.now();
      options.log(`fault ${kind} failed: ${record.error}`);
    }
    n += 1;
    const deadline = Date.now() + options.recoveryMs;
    const canary = await publishUntilAccepted(
      api,
      'soak.canary',
      `soak-${options.seed}-canary-${n}`,
      deadline,
    );
    if (canary !== undefined) {
      record.canaryEventId = canary;
      const at = await waitSucceeded(api, canary, deadline);
      if (at !== undefined) record.recoveredAt = at;
    }
    options.log(
      `fault ${kind}: ${record.recoveredAt === undefined ? 'NOT recovered' : `recovered in ${record.recoveredAt - record.restoredAt} ms`}`,
    );
    const gapMs = rng.int(2000, 5000);
    if (Date.now() + gapMs < options.endAt - 10_000) await sleep(gapMs);
  }
  return records;
}
