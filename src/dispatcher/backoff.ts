/**
 * Delay before retry number `failures` (1 = after the first failure): exponential from
 * `baseMs`, capped at `maxMs`, with "equal jitter" (half fixed, half random) so a burst of
 * failures does not retry in lockstep yet the delay never collapses to zero.
 */
export function retryDelayMs(
  failures: number,
  baseMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, failures - 1));
  return Math.round(exp / 2 + random() * (exp / 2));
}
