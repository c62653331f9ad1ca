import { nowIso } from '../../core/time.js';
import type { ModuleRecord, ModuleSpec } from '../../core/types.js';
import type { ModuleVersion, UpsertModuleResult } from '../document-store.js';
import { toModuleVersion } from '../module-version.js';
import { bumpRevision, canonicalSpec, toModule, writeModuleVersion } from './rows.js';
import type { Ctx, ModuleRow } from './rows.js';

/** The module statements of the Postgres document store (see the port for their meaning). */

export async function upsertModule(
  ctx: Ctx,
  schema: string,
  spec: ModuleSpec,
): Promise<UpsertModuleResult> {
  const { q, t } = ctx;
  const specJson = canonicalSpec(spec);
  // Two first upserts of one name would both see no row: serialise them on the name.
  await q.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [
    `ion.document-store.module:${schema}:${spec.name}`,
  ]);
  const { rows } = await q.query<ModuleRow>(
    `SELECT * FROM ${t.modules} WHERE name = $1 FOR UPDATE`,
    [spec.name],
  );
  const row = rows[0];
  if (row && !row.deleted && row.spec_json === specJson) {
    return { module: toModule(row), change: 'unchanged' };
  }
  const version = row ? row.version + 1 : 1;
  const stored = await writeModuleVersion(ctx, spec, version, specJson, nowIso());
  await bumpRevision(ctx);
  // A module revived after a delete is reported as created: it was absent a moment ago.
  const change = row && !row.deleted ? 'updated' : 'created';
  return { module: toModule(stored), change };
}

export async function getModule({ q, t }: Ctx, name: string): Promise<ModuleRecord | null> {
  const { rows } = await q.query<ModuleRow>(
    `SELECT * FROM ${t.modules} WHERE name = $1 AND NOT deleted`,
    [name],
  );
  return rows[0] ? toModule(rows[0]) : null;
}

export async function listModules({ q, t }: Ctx): Promise<ModuleRecord[]> {
  const { rows } = await q.query<ModuleRow>(
    `SELECT * FROM ${t.modules} WHERE NOT deleted ORDER BY name COLLATE "C"`,
  );
  return rows.map(toModule);
}

export async function deleteModule(ctx: Ctx, name: string): Promise<boolean> {
  const res = await ctx.q.query(
    `UPDATE ${ctx.t.modules} SET deleted = true, updated_at = $1
     WHERE name = $2 AND NOT deleted`,
    [nowIso(), name],
  );
  if (!res.rowCount) return false;
  await bumpRevision(ctx);
  return true;
}

export async function modulesRevision({ q, t }: Ctx): Promise<number> {
  const { rows } = await q.query<{ revision: string }>(
    `SELECT revision FROM ${t.modulesRevision} WHERE id = 1`,
  );
  return Number(rows[0]?.revision ?? 0);
}

export async function setModulePaused(
  ctx: Ctx,
  name: string,
  paused: boolean,
): Promise<ModuleRecord | null> {
  const { rows } = await ctx.q.query<ModuleRow>(
    `UPDATE ${ctx.t.modules} SET paused = $1, updated_at = $2
     WHERE name = $3 AND NOT deleted RETURNING *`,
    [paused, nowIso(), name],
  );
  if (!rows[0]) return null;
  await bumpRevision(ctx);
  return toModule(rows[0]);
}

export async function listModuleVersions({ q, t }: Ctx, name: string): Promise<ModuleVersion[]> {
  const { rows } = await q.query<{ version: number; spec_json: string; created_at: string }>(
    `SELECT version, spec_json, created_at FROM ${t.moduleVersions}
     WHERE name = $1 ORDER BY version`,
    [name],
  );
  return rows.map((r) => toModuleVersion(r.version, r.spec_json, r.created_at));
}
