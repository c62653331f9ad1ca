// Small helpers shared by the example's modules (Node built-ins only).
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** The job's base directory (the module contract's HANDLER_BASE_DIR). */
export function baseDir() {
  return process.env.HANDLER_BASE_DIR || process.env.ION_BASE_DIR || process.cwd();
}

/** The triggering event's metadata (in/eventmeta.json) as a Map; the first value of a key wins. */
export function readMeta(base) {
  const file = join(base, 'in', 'eventmeta.json');
  const meta = new Map();
  if (!existsSync(file)) return meta;
  for (const { key, value } of JSON.parse(readFileSync(file, 'utf8')))
    if (!meta.has(key)) meta.set(key, String(value));
  return meta;
}

/** Relative POSIX paths of the regular files under dir, sorted. */
export function listFiles(dir, prefix = '') {
  if (!existsSync(dir)) return [];
  const out = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...listFiles(join(dir, entry.name), rel));
    else if (entry.isFile()) out.push(rel);
  }
  return out.sort();
}

/** A file-name-safe form of a name (for folders under out/data). */
export function slug(name) {
  return (
    String(name)
      .replace(/\.[^./]*$/, '')
      .replace(/[^A-Za-z0-9._-]+/g, '_')
      .replace(/^[._]+/, '')
      .slice(0, 80) || 'video'
  );
}

/** Key/value array form of the contract, string values. */
export function kv(object) {
  return Object.entries(object).map(([key, value]) => ({ key, value: String(value) }));
}

/** Positive number from an environment variable, or exit with a clear message. */
export function numberEnv(name, fallback, { min = 0, max = Infinity } = {}) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= min || n > max)
    throw new UsageError(
      `${name} must be a number above ${min}${max < Infinity ? ` and at most ${max}` : ''}, got ${JSON.stringify(raw)}`,
    );
  return n;
}

/** A configuration or input problem: reported as one line, no stack trace. */
export class UsageError extends Error {}

/** Runs main; a UsageError becomes its message on stderr and exit code 2. */
export function guarded(name, main) {
  return async (dir) => {
    try {
      return await main(dir);
    } catch (err) {
      if (err instanceof UsageError) {
        console.error(`${name}: ${err.message}`);
        return 2;
      }
      throw err;
    }
  };
}
