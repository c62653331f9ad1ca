import type { Logger } from 'pino';
import { errorMessage } from '../core/errors.js';
import { sleep, yieldToEventLoop } from '../core/time.js';
import { Waker } from '../core/waker.js';

/** Options of {@link BatchLoop}. */
export interface BatchLoopOptions {
  /** One pass: handles up to `batchSize` items and returns how many it handled. */
  pass: () => Promise<number>;
  batchSize: number;
  /** How long an idle loop waits before looking again, unless woken. */
  pollIntervalMs: number;
  logger: Logger;
  /** Logged when a pass fails (the loop then backs off, 0.2 s doubling to 5 s). */
  failureMessage: string;
}

/**
 * The loop of a relay: runs passes back to back while they find a full batch (yielding the
 * event loop between them, so a long drain does not hold it), waits for a wake-up or the
 * poll interval once a pass comes back short, and backs off after a failed pass.
 */
export class BatchLoop {
  private readonly stopSignal = new AbortController();
  private readonly waker = new Waker();
  private loop: Promise<void> | null = null;

  constructor(private readonly options: BatchLoopOptions) {}

  start(): void {
    this.loop ??= this.run();
  }

  /** Look again now rather than at the next poll. */
  wake(): void {
    this.waker.wake();
  }

  async stop(): Promise<void> {
    this.stopSignal.abort();
    this.wake();
    await this.loop;
  }

  private async run(): Promise<void> {
    const { pass, batchSize, pollIntervalMs, logger, failureMessage } = this.options;
    const signal = this.stopSignal.signal;
    let failures = 0;
    while (!signal.aborted) {
      let handled = 0;
      try {
        handled = await pass();
        failures = 0;
      } catch (err) {
        failures += 1;
        logger.warn({ err: errorMessage(err) }, failureMessage);
        await sleep(Math.min(5000, 100 * 2 ** failures), signal);
        continue;
      }
      if (handled < batchSize) await this.waker.wait(pollIntervalMs, signal);
      else await yieldToEventLoop();
    }
  }
}
