import { posix } from 'node:path';

/**
 * Normalises a relative file path carried by an event or listed by a module, or returns an
 * explanation of why it is refused. Refused: empty, absolute, backslashes, NUL, and any path
 * that climbs out with `..`. The result uses `/` and has no `.` segments. `root` names the
 * directory the path is relative to, for the message.
 */
export function normaliseRelativePath(
  path: string,
  root = 'out/data',
): { ok: true; path: string } | { ok: false; reason: string } {
  if (path.length === 0) return { ok: false, reason: 'is empty' };
  if (path.includes('\0')) return { ok: false, reason: 'contains a NUL byte' };
  if (path.includes('\\')) return { ok: false, reason: 'contains a backslash; use "/"' };
  if (path.startsWith('/'))
    return { ok: false, reason: `is absolute; paths must be relative to ${root}` };
  if (path.split('/').includes('..'))
    return { ok: false, reason: `contains ".."; paths must stay inside ${root}` };
  const normal = posix.normalize(path);
  if (normal === '.' || normal.endsWith('/')) return { ok: false, reason: 'does not name a file' };
  return { ok: true, path: normal.replace(/^\.\//, '') };
}
