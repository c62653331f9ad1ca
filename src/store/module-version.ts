import type { ModuleVersion } from './document-store.js';
import { specFromJson } from './rows.js';

/** A `module_versions` row as the port returns it: the stored canonical spec, decoded. */
export function toModuleVersion(
  version: number,
  specJson: string,
  createdAt: string,
): ModuleVersion {
  return { version, spec: specFromJson(specJson), createdAt };
}
