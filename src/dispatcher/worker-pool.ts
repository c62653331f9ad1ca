import { errorMessage } from '../core/errors.js';
import { Waker } from '../core/waker.js';
import type { ModuleRecord } from '../core/types.js';
import type { DispatcherDeps } from './deps.js';
import { ModuleDispatcher } from './module-dispatcher.js';

export interface WorkerPoolOptions {
  /** Only dispatch these modules (`ion worker --modules a,b`); all when absent. */
  modules?: readonly string[];
}

/**
 * Runs one ModuleDispatcher per live module and keeps the set in step with the store:
 * applying a pipeline (from any process) starts, updates or stops dispatchers without a
 * restart. Changes are noticed through the store's module revision, polled every
 * `moduleRefreshMs`, or at once when `refresh()` is called in-process.
 */
export class WorkerPool {
  private readonly dispatchers = new Map<string, ModuleDispatcher>();
  private readonly stopSignal = new AbortController();
  private revision = -1;
  private readonly waker = new Waker();
  private loop: Promise<void> | null = null;

  constructor(
    private readonly deps: DispatcherDeps,
    private readonly options: WorkerPoolOptions = {},
  ) {}

  async start(): Promise<void> {
    await this.sync();
    this.loop = this.watch();
  }

  /** Re-reads the modules now (called after an in-process apply). */
  refresh(): void {
    this.waker.wake();
  }

  /** Jobs running now across all modules. */
  get running(): number {
    let n = 0;
    for (const d of this.dispatchers.values()) n += d.running;
    return n;
  }

  private async watch(): Promise<void> {
    const signal = this.stopSignal.signal;
    while (!signal.aborted) {
      await this.waker.wait(this.deps.settings.moduleRefreshMs, signal);
      if (signal.aborted) break;
      try {
        await this.sync();
      } catch (err) {
        this.deps.logger.warn({ err: errorMessage(err) }, 'could not refresh modules; retrying');
      }
    }
  }

  private wanted(module: ModuleRecord): boolean {
    return (
      !module.paused &&
      (this.options.modules === undefined || this.options.modules.includes(module.name))
    );
  }

  private async sync(): Promise<void> {
    const revision = await this.deps.store.modulesRevision();
    if (revision === this.revision) return;
    const modules = (await this.deps.store.listModules()).filter((m) => this.wanted(m));
    const names = new Set(modules.map((m) => m.name));
    for (const [name, dispatcher] of this.dispatchers) {
      if (!names.has(name)) {
        this.dispatchers.delete(name);
        this.deps.logger.info({ module: name }, 'module removed; stopping its dispatcher');
        await dispatcher.stop(this.deps.settings.shutdownGraceMs);
      }
    }
    for (const module of modules) {
      await this.deps.bus.ensureSubscription({
        name: module.name,
        topics: module.subscribes,
        leaseMs: this.deps.settings.leaseMs,
      });
      const existing = this.dispatchers.get(module.name);
      if (existing !== undefined) {
        existing.update(module);
        continue;
      }
      const dispatcher = new ModuleDispatcher(this.deps, module);
      this.dispatchers.set(module.name, dispatcher);
      dispatcher.start();
      this.deps.logger.info(
        { module: module.name, version: module.version, concurrency: module.concurrency },
        'dispatching module',
      );
    }
    this.revision = revision;
  }

  /** Graceful shutdown of every dispatcher (see ModuleDispatcher.stop). */
  async stop(graceMs = this.deps.settings.shutdownGraceMs): Promise<void> {
    this.stopSignal.abort();
    this.refresh();
    await this.loop;
    await Promise.all([...this.dispatchers.values()].map((d) => d.stop(graceMs)));
    this.dispatchers.clear();
  }
}
