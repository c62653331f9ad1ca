import type { Database } from 'better-sqlite3';
import { nowIso } from '../../core/time.js';
import type { ModuleRecord, ModuleSpec } from '../../core/types.js';
import type { ModuleVersion, UpsertModuleResult } from '../document-store.js';
import { toModuleVersion } from '../module-version.js';
import { bumpRevision, canonicalSpec, toModule, writeModuleVersion } from './rows.js';
import type { ModuleRow } from './rows.js';

/** The module statements of the SQLite document store (see the port for their meaning). */

function moduleRow(db: Database, name: string): ModuleRow | undefined {
  return db.prepare('SELECT * FROM modules WHERE name = ?').get(name) as ModuleRow | undefined;
}

export function upsertModule(db: Database, spec: ModuleSpec): UpsertModuleResult {
  const specJson = canonicalSpec(spec);
  const row = moduleRow(db, spec.name);
  if (row && row.deleted === 0 && row.spec_json === specJson) {
    return { module: toModule(row), change: 'unchanged' };
  }
  const version = row ? row.version + 1 : 1;
  writeModuleVersion(db, spec, version, specJson, nowIso());
  bumpRevision(db);
  // A module revived after a delete is reported as created: it was absent a moment ago.
  const change = row && row.deleted === 0 ? 'updated' : 'created';
  return { module: toModule(moduleRow(db, spec.name)!), change };
}

export function getModule(db: Database, name: string): ModuleRecord | null {
  const row = db.prepare('SELECT * FROM modules WHERE name = ? AND deleted = 0').get(name) as
    ModuleRow | undefined;
  return row ? toModule(row) : null;
}

export function listModules(db: Database): ModuleRecord[] {
  return (
    db.prepare('SELECT * FROM modules WHERE deleted = 0 ORDER BY name').all() as ModuleRow[]
  ).map(toModule);
}

export function deleteModule(db: Database, name: string): boolean {
  const res = db
    .prepare('UPDATE modules SET deleted = 1, updated_at = ? WHERE name = ? AND deleted = 0')
    .run(nowIso(), name);
  if (res.changes === 0) return false;
  bumpRevision(db);
  return true;
}

export function modulesRevision(db: Database): number {
  const row = db.prepare('SELECT revision FROM modules_revision WHERE id = 1').get() as {
    revision: number;
  };
  return row.revision;
}

export function setModulePaused(db: Database, name: string, paused: boolean): ModuleRecord | null {
  const res = db
    .prepare('UPDATE modules SET paused = ?, updated_at = ? WHERE name = ? AND deleted = 0')
    .run(paused ? 1 : 0, nowIso(), name);
  if (res.changes === 0) return null;
  bumpRevision(db);
  return toModule(moduleRow(db, name)!);
}

export function listModuleVersions(db: Database, name: string): ModuleVersion[] {
  return (
    db
      .prepare(
        'SELECT version, spec_json, created_at FROM module_versions WHERE name = ? ORDER BY version',
      )
      .all(name) as { version: number; spec_json: string; created_at: string }[]
  ).map((r) => toModuleVersion(r.version, r.spec_json, r.created_at));
}
