import { lstat, readFile, readdir, realpath, stat } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { ModuleOutputError, errorMessage } from '../core/errors.js';
import type { KeyValue } from '../core/types.js';
import { jobLayout } from './layout.js';
import { normaliseRelativePath } from './safe-path.js';

/** Limits that keep a misbehaving module from exhausting the platform. */
export const OUTPUT_LIMITS = {
  maxEvents: 10_000,
  maxEventFileBytes: 1024 * 1024,
  maxInsightsBytes: 4 * 1024 * 1024,
  maxFiles: 100_000,
} as const;

/** One file left in `out/data`, to persist. */
export interface OutputFile {
  /** Relative to out/data, `/`-separated. */
  path: string;
  /** Absolute path of the real file on disk. */
  absPath: string;
}

/** One event raised by the module, validated. */
export interface RaisedEvent {
  /** The event file's name in out/events (part of the deterministic child id). */
  fileName: string;
  type: string;
  data: KeyValue[];
  /** Relative to out/data; each present in `files` of the plan. */
  files: string[];
}

/** What commit persists for one successful attempt. */
export interface CommitPlan {
  files: OutputFile[];
  insights: KeyValue[];
  events: RaisedEvent[];
}

function isInside(parent: string, child: string): boolean {
  const rel = relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !rel.startsWith(sep) && rel !== '..');
}

/** Walks out/data: regular files are kept; a symlink must resolve to a file inside out/data. */
async function collectOutputFiles(outData: string): Promise<Map<string, OutputFile>> {
  const root = await realpath(outData);
  const files = new Map<string, OutputFile>();
  async function walk(dir: string): Promise<void> {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const abs = join(dir, entry.name);
      const rel = relative(outData, abs).split(sep).join('/');
      if (entry.isDirectory()) {
        await walk(abs);
        continue;
      }
      let real = abs;
      if (entry.isSymbolicLink()) {
        try {
          real = await realpath(abs);
        } catch {
          throw new ModuleOutputError(`out/data/${rel} is a symlink to a missing target`);
        }
        if (!isInside(root, real))
          throw new ModuleOutputError(`out/data/${rel} is a symlink pointing outside out/data`);
        if ((await stat(real)).isDirectory()) continue; // its files are walked at their real place
      } else if (!entry.isFile()) {
        throw new ModuleOutputError(`out/data/${rel} is not a regular file`);
      }
      files.set(rel, { path: rel, absPath: real });
      if (files.size > OUTPUT_LIMITS.maxFiles)
        throw new ModuleOutputError(`out/data holds more than ${OUTPUT_LIMITS.maxFiles} files`);
    }
  }
  await walk(outData);
  return files;
}

/** Reads and parses a JSON output file; a blank file (only whitespace) reads as undefined. */
async function readJsonFile(path: string, label: string, maxBytes: number): Promise<unknown> {
  const info = await stat(path);
  if (info.size > maxBytes)
    throw new ModuleOutputError(`${label} is ${info.size} bytes; the limit is ${maxBytes}`);
  const text = await readFile(path, 'utf8');
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new ModuleOutputError(`${label} is not valid JSON: ${errorMessage(err)}`);
  }
}

function scalarToString(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return undefined;
}

/** Reads a key/value array (`[{"key": "...", "value": "..."}]`); numbers and booleans become strings. */
function parseKeyValues(doc: unknown, label: string): KeyValue[] {
  if (!Array.isArray(doc))
    throw new ModuleOutputError(`${label} must be a JSON array of {"key", "value"} objects`);
  return doc.map((item: unknown, i) => {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      throw new ModuleOutputError(`${label}[${i}] must be an object with "key" and "value"`);
    }
    const { key, value } = item as Record<string, unknown>;
    if (typeof key !== 'string' || key === '')
      throw new ModuleOutputError(`${label}[${i}].key must be a non-empty string`);
    const text = scalarToString(value);
    if (text === undefined) throw new ModuleOutputError(`${label}[${i}].value must be a string`);
    return { key, value: text };
  });
}

/** Reads one event file in the contract's array form or the object-form extension. */
function parseEventDoc(
  doc: unknown,
  label: string,
): { type: unknown; files: string[]; data: KeyValue[] } {
  if (Array.isArray(doc)) {
    const pairs = parseKeyValues(doc, label);
    let type: unknown;
    let files: string[] = [];
    const data: KeyValue[] = [];
    for (const { key, value } of pairs) {
      if (key === 'eventType') type = value;
      else if (key === 'files') files = value.split(',');
      else data.push({ key, value });
    }
    return { type, files, data };
  }
  if (typeof doc === 'object' && doc !== null) {
    const obj = doc as Record<string, unknown>;
    const unknownKeys = Object.keys(obj).filter((k) => !['eventType', 'files', 'data'].includes(k));
    if (unknownKeys.length > 0)
      throw new ModuleOutputError(
        `${label} has unknown field "${unknownKeys[0]}" (allowed: eventType, files, data)`,
      );
    let files: string[] = [];
    if (obj.files !== undefined) {
      if (typeof obj.files === 'string') files = obj.files.split(',');
      else if (Array.isArray(obj.files) && obj.files.every((f) => typeof f === 'string'))
        files = obj.files;
      else
        throw new ModuleOutputError(
          `${label}.files must be an array of paths or a comma-separated string`,
        );
    }
    const data: KeyValue[] = [];
    if (obj.data !== undefined) {
      if (typeof obj.data !== 'object' || obj.data === null || Array.isArray(obj.data)) {
        throw new ModuleOutputError(`${label}.data must be an object of string values`);
      }
      for (const [key, value] of Object.entries(obj.data)) {
        const text = scalarToString(value);
        if (text === undefined)
          throw new ModuleOutputError(`${label}.data.${key} must be a string`);
        data.push({ key, value: text });
      }
    }
    return { type: obj.eventType, files, data };
  }
  throw new ModuleOutputError(`${label} must be a JSON array of key/value pairs or an object`);
}

/**
 * Commit, first half: reads and validates everything the module left in its job directory.
 * Throws ModuleOutputError with a message naming the file and the problem; the caller fails
 * the attempt with it. Nothing is persisted here.
 */
export async function readJobOutputs(
  base: string,
  publishes: readonly string[],
): Promise<CommitPlan> {
  const layout = jobLayout(base);
  const files = await collectOutputFiles(layout.outData);

  let insights: KeyValue[] = [];
  const insightsInfo = await lstat(layout.insights).catch(() => null);
  if (insightsInfo !== null) {
    if (!insightsInfo.isFile())
      throw new ModuleOutputError('out/insights.json must be a regular file');
    // Missing, empty or blank: no insights (a shell module may leave a bare newline).
    const doc = await readJsonFile(
      layout.insights,
      'out/insights.json',
      OUTPUT_LIMITS.maxInsightsBytes,
    );
    if (doc !== undefined) insights = parseKeyValues(doc, 'out/insights.json');
  }

  const events: RaisedEvent[] = [];
  const names = (await readdir(layout.outEvents, { withFileTypes: true }))
    .filter((e) => e.name.endsWith('.json'))
    .map((e) => {
      if (!e.isFile()) throw new ModuleOutputError(`out/events/${e.name} must be a regular file`);
      return e.name;
    })
    .sort();
  if (names.length > OUTPUT_LIMITS.maxEvents)
    throw new ModuleOutputError(
      `out/events holds ${names.length} events; the limit is ${OUTPUT_LIMITS.maxEvents}`,
    );
  for (const name of names) {
    const label = `out/events/${name}`;
    const doc = await readJsonFile(
      join(layout.outEvents, name),
      label,
      OUTPUT_LIMITS.maxEventFileBytes,
    );
    const parsed = parseEventDoc(doc, label);
    if (typeof parsed.type !== 'string' || parsed.type === '')
      throw new ModuleOutputError(`${label} has no eventType`);
    if (!publishes.includes(parsed.type)) {
      throw new ModuleOutputError(
        `${label} raises event type "${parsed.type}" which the module does not declare in publishes (${publishes.length === 0 ? 'none declared' : publishes.join(', ')})`,
      );
    }
    const eventFiles: string[] = [];
    for (const raw of parsed.files) {
      const segment = raw.trim();
      if (segment === '') continue;
      const checked = normaliseRelativePath(segment);
      if (!checked.ok)
        throw new ModuleOutputError(`${label} lists file "${segment}" which ${checked.reason}`);
      if (!files.has(checked.path)) {
        const info = await lstat(join(layout.outData, checked.path)).catch(() => null);
        throw new ModuleOutputError(
          info?.isDirectory() === true
            ? `${label} lists "${checked.path}" which is a directory in out/data; list files`
            : `${label} lists file "${checked.path}" which does not exist in out/data`,
        );
      }
      if (!eventFiles.includes(checked.path)) eventFiles.push(checked.path);
    }
    events.push({ fileName: name, type: parsed.type, data: parsed.data, files: eventFiles });
  }
  return { files: [...files.values()], insights, events };
}
