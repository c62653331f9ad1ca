/** Current time as ISO-8601; one place so stores and tests agree on the format. */
export function nowIso(): string {
  return new Date().toISOString();
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Lets timers and I/O run before going on. Loops over embedded (synchronous) adapters resolve
 * every await at once, so without this a long one would hold the event loop: no API answer,
 * no child exit handled, no lease extended until it ends.
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
