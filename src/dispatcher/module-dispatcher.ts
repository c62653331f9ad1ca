import type { Delivery } from '../bus/event-bus.js';
import { errorMessage } from '../core/errors.js';
import { sleep } from '../core/time.js';
import type { ModuleRecord } from '../core/types.js';
import type { DispatcherDeps } from './deps.js';
import { JobRunner } from './job-runner.js';

/** Pauses before a failed pull loop starts again: doubling from the base up to the max. */
const RESTART_BASE_DELAY_MS = 500;
const RESTART_MAX_DELAY_MS = 30_000;

/**
 * Consumes one module's subscription with at most `module.concurrency` jobs in flight. The
 * module record can be swapped while it runs (`update`): a new concurrency applies to the
 * next pull, a new version to the next job.
 */
export class ModuleDispatcher {
  private module: ModuleRecord;
  private readonly runner: JobRunner;
  private readonly stopPulling = new AbortController();
  private readonly cancelJobs = new AbortController();
  private readonly inflight = new Set<Promise<void>>();
  private slotWaiter: (() => void) | null = null;
  private loop: Promise<void> | null = null;

  constructor(
    private readonly deps: DispatcherDeps,
    module: ModuleRecord,
  ) {
    this.module = module;
    this.runner = new JobRunner(deps);
  }

  get name(): string {
    return this.module.name;
  }

  get running(): number {
    return this.inflight.size;
  }

  start(): void {
    this.loop ??= this.consumeUntilStopped();
  }

  /**
   * Runs the pull loop until `stop`. A loop that fails (the bus lost the subscription, a
   * broker error the adapter could not absorb) or ends on its own is started again after a
   * backoff, so one bad moment never leaves a module without a consumer in this worker.
   */
  private async consumeUntilStopped(): Promise<void> {
    const signal = this.stopPulling.signal;
    let failures = 0;
    while (!signal.aborted) {
      let took = 0;
      try {
        took = await this.pull();
        if (signal.aborted) return;
        this.deps.logger.warn(
          { module: this.module.name },
          'the bus ended the consumption of this module; starting it again',
        );
      } catch (err) {
        this.deps.logger.error(
          { module: this.module.name, err: errorMessage(err) },
          'dispatcher loop failed; starting it again after a pause',
        );
      }
      failures = took > 0 ? 1 : failures + 1;
      await sleep(
        Math.min(RESTART_MAX_DELAY_MS, RESTART_BASE_DELAY_MS * 2 ** (failures - 1)),
        signal,
      );
    }
  }

  update(module: ModuleRecord): void {
    this.module = module;
    this.wakeSlot();
  }

  private wakeSlot(): void {
    const w = this.slotWaiter;
    this.slotWaiter = null;
    w?.();
  }

  private async waitForSlot(): Promise<void> {
    while (this.inflight.size >= this.module.concurrency && !this.stopPulling.signal.aborted) {
      await new Promise<void>((resolve) => {
        this.slotWaiter = resolve;
      });
    }
  }

  /** Pulls deliveries until stopped or the iteration ends; returns how many it took. */
  private async pull(): Promise<number> {
    const signal = this.stopPulling.signal;
    const iterator = this.deps.bus.consume(this.module.name, { signal })[Symbol.asyncIterator]();
    let took = 0;
    try {
      while (!signal.aborted) {
        await this.waitForSlot();
        if (signal.aborted) break;
        const next = await iterator.next();
        if (next.done === true) break;
        if (signal.aborted) {
          await this.release(next.value);
          break;
        }
        took += 1;
        this.track(next.value);
      }
    } finally {
      await iterator.return?.().catch(() => undefined);
    }
    return took;
  }

  private track(delivery: Delivery): void {
    const job = this.runner.handle(delivery, this.module, this.cancelJobs.signal).finally(() => {
      this.inflight.delete(job);
      this.wakeSlot();
    });
    this.inflight.add(job);
  }

  private async release(delivery: Delivery): Promise<void> {
    await delivery.nack({ delayMs: 0 }).catch(() => undefined);
  }

  /**
   * Graceful stop: take no new work, let running jobs finish for up to `graceMs`, then
   * cancel the rest (their processes are killed and their deliveries released for
   * redelivery, without counting against the retry budget).
   */
  async stop(graceMs: number): Promise<void> {
    this.stopPulling.abort();
    this.wakeSlot();
    await this.loop;
    if (this.inflight.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
      });
      await Promise.race([Promise.all(this.inflight), grace]);
      clearTimeout(timer);
    }
    this.cancelJobs.abort();
    await Promise.all(this.inflight);
  }
}
