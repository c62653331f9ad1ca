import type Docker from 'dockerode';
import type { Logger } from 'pino';
import { LABEL } from './container-spec.js';
import { engineMessage, statusOf } from './engine.js';

/**
 * Whether an attempt still runs somewhere (on this worker or on another one). Answer true
 * when unsure: a container is removed only when its attempt is known to be over.
 */
export type AttemptLiveness = (jobId: string, attempt: number) => Promise<boolean>;

export interface OrphanSweeperOptions {
  docker: Docker;
  isAttemptLive: AttemptLiveness;
  /** True for a container this executor runs right now (by name): never swept. */
  isOwn(name: string): boolean;
  /** Time between sweeps after the first; 0: only the sweep at start-up. */
  intervalMs: number;
  logger?: Logger;
}

/**
 * Removes the containers Ion's docker executor left behind when a worker crashed: each
 * container labelled `ion.executor=docker` whose attempt is not live any more, at start-up
 * and then every `intervalMs`. A container of a live attempt (another worker's, or one of
 * this worker's) is never touched, nor one the liveness check cannot decide.
 */
export class OrphanSweeper {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;
  private closed = false;

  constructor(private readonly options: OrphanSweeperOptions) {}

  async start(): Promise<void> {
    await this.sweep().catch((err: unknown) =>
      this.options.logger?.warn({ err: engineMessage(err) }, 'container sweep failed'),
    );
    if (this.options.intervalMs > 0 && !this.closed) {
      this.timer = setInterval(() => {
        this.sweep().catch((err: unknown) =>
          this.options.logger?.warn({ err: engineMessage(err) }, 'container sweep failed'),
        );
      }, this.options.intervalMs);
      this.timer.unref();
    }
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
  }

  /** One sweep (never two at once); resolves to how many containers it removed. */
  sweep(): Promise<number> {
    this.running ??= this.sweepOnce().finally(() => (this.running = undefined));
    return this.running;
  }

  private async sweepOnce(): Promise<number> {
    const { docker, isAttemptLive, logger } = this.options;
    const isOwn = (name: string): boolean => this.options.isOwn(name);
    const containers = await docker.listContainers({
      all: true,
      filters: { label: [`${LABEL.executor}=docker`] },
    });
    let removed = 0;
    for (const info of containers) {
      const name = (info.Names[0] ?? '').replace(/^\//, '');
      const jobId = info.Labels[LABEL.job];
      const attempt = Number(info.Labels[LABEL.attempt]);
      if (isOwn(name) || jobId === undefined || !Number.isInteger(attempt)) continue;
      const live = await isAttemptLive(jobId, attempt).catch(() => true);
      if (live || isOwn(name)) continue;
      try {
        await docker.getContainer(info.Id).remove({ force: true, v: true });
        removed += 1;
        logger?.info(
          { container: name, jobId, attempt },
          'removed the container of an attempt that no longer runs',
        );
      } catch (err) {
        if (statusOf(err) !== 404 && statusOf(err) !== 409) throw err;
      }
    }
    return removed;
  }
}
