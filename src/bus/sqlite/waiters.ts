/**
 * Why a wait ended: `wake` (a message was made available through this instance for this
 * subscription), `poll` (the subscription's poll tick: look for work nobody announced),
 * `stop` (abort or close).
 */
export type WakeReason = 'wake' | 'poll' | 'stop';

/** A consumer waiting in this process; calling it resolves its wait (idempotent). */
type Waiter = (reason: WakeReason) => void;

/** The consumers of one subscription waiting in this process, oldest first, and its poll timer. */
interface WaitQueue {
  waiters: Set<Waiter>;
  poll: NodeJS.Timeout | undefined;
}

/**
 * The consumers of the SQLite event bus waiting in this process, per subscription, with one
 * poll timer per subscription that has any. Each tick wakes the oldest waiter unless
 * `isIdle` says a claim would certainly find nothing. Never busy-loops.
 */
export class SubscriptionWaiters {
  private readonly waiting = new Map<string, WaitQueue>();

  constructor(
    private readonly pollIntervalMs: number,
    private readonly isIdle: (subscription: string) => boolean,
    private readonly isClosed: () => boolean,
  ) {}

  /**
   * Resolves on a wake-up, the subscription's poll tick, abort or {@link stopAll}.
   * Registered synchronously, so a publish made after the claim that found nothing cannot
   * be missed.
   */
  wait(subscription: string, signal: AbortSignal): Promise<WakeReason> {
    return new Promise((resolve) => {
      let queue = this.waiting.get(subscription);
      if (!queue) {
        queue = { waiters: new Set(), poll: undefined };
        this.waiting.set(subscription, queue);
      }
      const waiters = queue.waiters;
      const onAbort = (): void => finish('stop');
      const finish: Waiter = (reason) => {
        if (!waiters.delete(finish)) return;
        signal.removeEventListener('abort', onAbort);
        this.releaseQueue(subscription);
        resolve(reason);
      };
      waiters.add(finish);
      signal.addEventListener('abort', onAbort, { once: true });
      this.armPoll(subscription, queue);
    });
  }

  /** Wakes the oldest consumer of `subscription` waiting in this process, if any. */
  wake(subscription: string, reason: 'wake' | 'poll'): void {
    const queue = this.waiting.get(subscription);
    const first = queue?.waiters.values().next();
    if (first && !first.done) first.value(reason);
  }

  /** Ends every wait (close). */
  stopAll(): void {
    for (const queue of [...this.waiting.values()]) {
      for (const waiter of [...queue.waiters]) waiter('stop');
    }
  }

  /** One poll timer per subscription with waiters; each tick wakes one of them. */
  private armPoll(subscription: string, queue: WaitQueue): void {
    if (queue.poll !== undefined || this.isClosed()) return;
    queue.poll = setTimeout(() => {
      queue.poll = undefined;
      // Claims only when something may have changed; otherwise the tick costs one pragma read.
      if (!this.isIdle(subscription)) this.wake(subscription, 'poll');
      // Still waiters (the woken one re-arms when it waits again): keep polling.
      if (queue.waiters.size > 0) this.armPoll(subscription, queue);
    }, this.pollIntervalMs);
  }

  /** Stops the poll and forgets the queue once nobody waits on it. */
  private releaseQueue(subscription: string): void {
    const queue = this.waiting.get(subscription);
    if (!queue || queue.waiters.size > 0) return;
    clearTimeout(queue.poll);
    this.waiting.delete(subscription);
  }
}
