/** The one wait helper of the tests: wait for a condition with a deadline, never a fixed sleep. */
/** Thrown by a check to end the wait at once: the condition can no longer become true. */
export class StopWaiting extends Error {}

/**
 * Polls `check` until it returns a non-undefined value or the deadline passes. Errors from
 * `check` count as "not yet" (and the last one is reported), except StopWaiting.
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 30_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (err) {
      if (err instanceof StopWaiting) throw err;
      lastError = err;
    }
    if (Date.now() > deadline) {
      const detail = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
      throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}${detail}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
