import { readdir, readlink } from 'node:fs/promises';

/**
 * Pids of the live processes whose working directory is under `dir`. A warm process works
 * in its home under the data directory between jobs and in the job directory during one,
 * so this finds every module process an Ion left behind (a zombie has no cwd: not listed).
 */
export async function processesUnder(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const cwd = await readlink(`/proc/${name}/cwd`).catch(() => null);
    if (cwd !== null && cwd.startsWith(dir)) pids.push(Number(name));
  }
  return pids;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
