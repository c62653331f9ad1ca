import { NotFoundError } from '../core/errors.js';
import { moduleSpecSchema, parseModule, parsePipeline } from '../core/pipeline.js';
import type { ModuleRecord, ModuleSpec } from '../core/types.js';
import { parseOrThrow } from '../core/validation.js';
import type { ModuleVersion, UpsertModuleResult } from '../store/document-store.js';
import type { ControlDeps } from './control-deps.js';

export interface ApplyResult {
  modules: {
    name: string;
    version: number;
    change: 'created' | 'updated' | 'unchanged' | 'deleted';
  }[];
}

/**
 * The module operations of the management API: apply a pipeline, put one module, list,
 * pause, delete, and read versions. Keeps the invariant that a module's bus subscription
 * exists before the module is stored, so its first event is never missed.
 */
export class Modules {
  constructor(
    private readonly deps: Pick<ControlDeps, 'store' | 'bus' | 'leaseMs' | 'onModulesChanged'>,
  ) {}

  /**
   * Applies a pipeline: creates or updates every module it declares (a changed module gets a
   * new version) and, with `prune`, deletes modules it no longer declares.
   */
  async apply(doc: unknown, options: { prune?: boolean } = {}): Promise<ApplyResult> {
    const pipeline = parsePipeline(doc);
    const { store, bus } = this.deps;
    const result: ApplyResult = { modules: [] };
    for (const spec of pipeline.modules) {
      const { module, change } = await this.install(spec);
      result.modules.push({ name: module.name, version: module.version, change });
    }
    if (options.prune === true) {
      const declared = new Set(pipeline.modules.map((m) => m.name));
      for (const module of await store.listModules()) {
        if (declared.has(module.name)) continue;
        await store.deleteModule(module.name);
        await bus.deleteSubscription(module.name);
        result.modules.push({ name: module.name, version: module.version, change: 'deleted' });
      }
    }
    this.deps.onModulesChanged?.();
    return result;
  }

  /** Subscribes a module, then stores it (a changed spec makes a new version). */
  private async install(spec: ModuleSpec): Promise<UpsertModuleResult> {
    parseOrThrow(moduleSpecSchema, spec, `module ${spec.name}`);
    // Subscribe first, so events published right after the change are kept for the module.
    await this.deps.bus.ensureSubscription({
      name: spec.name,
      topics: spec.subscribes,
      leaseMs: this.deps.leaseMs,
    });
    return this.deps.store.upsertModule(spec);
  }

  /**
   * Creates or updates one module from a document shaped like one entry of a pipeline file;
   * the other modules are left as they are.
   */
  async put(name: string, doc: unknown): Promise<UpsertModuleResult> {
    const result = await this.install(parseModule(name, doc));
    this.deps.onModulesChanged?.();
    return result;
  }

  list(): Promise<ModuleRecord[]> {
    return this.deps.store.listModules();
  }

  async get(name: string): Promise<ModuleRecord> {
    const module = await this.deps.store.getModule(name);
    if (module === null) throw new NotFoundError(`module "${name}" does not exist`);
    return module;
  }

  /**
   * Deletes a module: its dispatching stops (at the pool's next refresh) and its bus
   * subscription goes, as with `prune`; its versions, jobs and events are kept.
   */
  async delete(name: string): Promise<void> {
    if (!(await this.deps.store.deleteModule(name)))
      throw new NotFoundError(`module "${name}" does not exist`);
    await this.deps.bus.deleteSubscription(name);
    this.deps.onModulesChanged?.();
  }

  /**
   * Pauses or resumes a module. While paused no job of it starts; its subscription stays, so
   * events published meanwhile wait in the bus and run after the resume.
   */
  async setPaused(name: string, paused: boolean): Promise<ModuleRecord> {
    const module = await this.deps.store.setModulePaused(name, paused);
    if (module === null) throw new NotFoundError(`module "${name}" does not exist`);
    this.deps.onModulesChanged?.();
    return module;
  }

  /** Every version of a module, oldest first; a deleted module keeps its history. */
  async versions(name: string): Promise<ModuleVersion[]> {
    const versions = await this.deps.store.listModuleVersions(name);
    if (versions.length === 0) throw new NotFoundError(`module "${name}" does not exist`);
    return versions;
  }
}
