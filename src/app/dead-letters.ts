import { NotFoundError, ValidationError } from '../core/errors.js';
import type { DeadLetter, Job } from '../core/types.js';
import { checkLimit, type ControlDeps } from './control-deps.js';

/**
 * Which dead letters a bulk operation acts on: the listed `ids` (only those of `module` when
 * given too), or every one of `module`, or every one (`all: true`, narrowed by `module`).
 * An empty selector is refused, so a bare request never touches everything by accident.
 */
export interface DeadLetterSelector {
  ids?: string[];
  module?: string;
  all?: boolean;
}

/** The dead-letter operations of the management API: list, redrive and discard, one or many. */
export class DeadLetters {
  constructor(private readonly deps: Pick<ControlDeps, 'store' | 'onPublished'>) {}

  list(filter: { module?: string; limit?: number }): Promise<DeadLetter[]> {
    checkLimit(filter.limit);
    return this.deps.store.listDeadLetters(filter);
  }

  /** Sends a dead-lettered job back to its module; its attempt history is kept. */
  async redrive(id: string): Promise<Job | null> {
    const dead = await this.deps.store.getDeadLetter(id);
    if (dead === null) throw new NotFoundError(`dead letter ${id} does not exist`);
    const job = await this.deps.store.redriveDeadLetter(id);
    this.deps.onPublished?.();
    return job;
  }

  async discard(id: string): Promise<void> {
    if (!(await this.deps.store.discardDeadLetter(id)))
      throw new NotFoundError(`dead letter ${id} does not exist`);
  }

  /** Redrives the dead letters a selector names (see {@link DeadLetterSelector}). */
  async redriveMany(selector: DeadLetterSelector): Promise<{ redriven: number; jobs: Job[] }> {
    const jobs: Job[] = [];
    let redriven = 0;
    await this.each(selector, async (id) => {
      if ((await this.deps.store.getDeadLetter(id)) === null) return;
      const job = await this.deps.store.redriveDeadLetter(id);
      redriven += 1;
      if (job !== null) jobs.push(job);
    });
    if (redriven > 0) this.deps.onPublished?.();
    return { redriven, jobs };
  }

  /** Discards the dead letters a selector names (see {@link DeadLetterSelector}). */
  async discardMany(selector: DeadLetterSelector): Promise<{ discarded: number }> {
    let discarded = 0;
    await this.each(selector, async (id) => {
      if (await this.deps.store.discardDeadLetter(id)) discarded += 1;
    });
    return { discarded };
  }

  private async each(
    selector: DeadLetterSelector,
    fn: (id: string) => Promise<void>,
  ): Promise<void> {
    const { ids, module, all } = selector;
    if (ids !== undefined && all === true)
      throw new ValidationError('give either ids or all, not both', [
        { path: 'ids', message: 'not allowed together with all' },
      ]);
    if ((ids === undefined || ids.length === 0) && all !== true && module === undefined)
      throw new ValidationError('say which dead letters: ids, module or all: true', [
        { path: '', message: 'empty selector' },
      ]);
    if (ids !== undefined) {
      for (const id of new Set(ids)) {
        if (module !== undefined) {
          const dead = await this.deps.store.getDeadLetter(id);
          if (dead === null || dead.module !== module) continue;
        }
        await fn(id);
      }
      return;
    }
    // Page through until a page brings nothing new: each id is handled once, even when a
    // redriven job fails again and is dead-lettered anew while this runs.
    const seen = new Set<string>();
    for (;;) {
      const page = await this.deps.store.listDeadLetters({
        ...(module === undefined ? {} : { module }),
        limit: 1000,
      });
      const fresh = page.filter((d) => !seen.has(d.id));
      if (fresh.length === 0) return;
      for (const dead of fresh) {
        seen.add(dead.id);
        await fn(dead.id);
      }
    }
  }
}
