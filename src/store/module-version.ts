import type { ModuleSpec } from '../core/types.js';
import type { ModuleVersion } from './document-store.js';

/**
 * A `module_versions` row as the port returns it. The stored spec is the canonical form
 * (`cwd: null` when absent); the returned spec leaves an absent `cwd` out, like `toModule`.
 */
export function toModuleVersion(
  version: number,
  specJson: string,
  createdAt: string,
): ModuleVersion {
  const stored = JSON.parse(specJson) as Omit<ModuleSpec, 'run'> & {
    run: { command: string[]; cwd: string | null };
  };
  const run: ModuleSpec['run'] = { command: stored.run.command };
  if (stored.run.cwd !== null && stored.run.cwd !== undefined) run.cwd = stored.run.cwd;
  return { version, spec: { ...stored, run }, createdAt };
}
