import type { Delivery } from '../bus/event-bus.js';
import { errorMessage } from '../core/errors.js';
import type { ModuleRecord } from '../core/types.js';
import type { DispatcherDeps } from './deps.js';
import { JobRunner } from './job-runner.js';

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
    this.loop ??= this.pull().catch((err: unknown) => {
      this.deps.logger.error(
        { module: this.module.name, err: errorMessage(err) },
        'dispatcher loop stopped',
      );
    });
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

  private async pull(): Promise<void> {
    const signal = this.stopPulling.signal;
    const iterator = this.deps.bus.consume(this.module.name, { signal })[Symbol.asyncIterator]();
    while (!signal.aborted) {
      await this.waitForSlot();
      if (signal.aborted) break;
      const next = await iterator.next();
      if (next.done === true) break;
      if (signal.aborted) {
        await this.release(next.value);
        break;
      }
      this.track(next.value);
    }
    await iterator.return?.();
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
