/**
 * Whether a process of this host is alive (signal 0: EPERM means it is, under another user).
 * Used to tell files, containers and attempts a dead Ion process left from a live one's.
 */
export function processAlive(pid: number): boolean {
  // 0 and negative pids name process groups: never taken for a dead process.
  if (!Number.isInteger(pid) || pid <= 0) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
