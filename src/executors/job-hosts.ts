import type { ExecutorKind, ModuleSpec } from '../core/types.js';
import type { HostFailure, JobHost } from './job-host.js';

/** Makes the job host of one executor kind; called once, on first use. */
export type JobHostFactory = () => JobHost | Promise<JobHost>;

export function isHostFailure(value: JobHost | HostFailure): value is HostFailure {
  return 'code' in value;
}

/**
 * Which executor a module runs on: its own `executor`, else the worker's default; a module
 * with an image on a worker whose default is `local` runs on `docker` (a host process cannot
 * run an image).
 */
export function executorKindFor(module: ModuleSpec, defaultKind: ExecutorKind): ExecutorKind {
  if (module.executor !== undefined) return module.executor;
  if (module.run.image !== undefined && defaultKind === 'local') return 'docker';
  return defaultKind;
}

/**
 * The job hosts of one worker, one per executor kind, each made and started the first time a
 * module needs it: a worker of local modules never connects to Docker or Kubernetes.
 */
export class JobHosts {
  private readonly started = new Map<ExecutorKind, Promise<JobHost>>();
  private closed = false;

  constructor(
    readonly defaultKind: ExecutorKind,
    private readonly factories: Partial<Record<ExecutorKind, JobHostFactory>>,
  ) {}

  /** Starts the default kind's host now, so a misconfigured worker fails at start-up. */
  async start(): Promise<void> {
    const host = await this.host(this.defaultKind);
    if (isHostFailure(host)) throw new Error(host.message);
  }

  /** The host a module runs on, or why this worker cannot run it. */
  async hostFor(module: ModuleSpec): Promise<JobHost | HostFailure> {
    return this.host(executorKindFor(module, this.defaultKind));
  }

  /** The host of one executor kind, made and started on first use. */
  async host(kind: ExecutorKind): Promise<JobHost | HostFailure> {
    const factory = this.factories[kind];
    if (factory === undefined || this.closed)
      return {
        code: 'executor_unavailable',
        kind: 'platform',
        message: `this worker has no ${kind} executor${this.closed ? ' (it is shutting down)' : ''}; see docs/executors.md`,
      };
    let starting = this.started.get(kind);
    if (starting === undefined) {
      starting = (async () => {
        const host = await factory();
        await host.start();
        return host;
      })();
      this.started.set(kind, starting);
      // A host that failed to start is made again on the next use (the engine may come up).
      starting.catch(() => this.started.delete(kind));
    }
    try {
      return await starting;
    } catch (err) {
      return {
        code: 'executor_unavailable',
        kind: 'platform',
        message: `the ${kind} executor could not start: ${err instanceof Error ? err.message : String(err)}`,
      };
    }
  }

  /** Closes every host that was started. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    const hosts = [...this.started.values()];
    this.started.clear();
    for (const starting of hosts) {
      const host = await starting.catch(() => null);
      await host?.close();
    }
  }
}
