import { describe, expect, it } from 'vitest';
import { retryDelayMs } from './backoff.js';

/** A deterministic pseudo-random sequence in [0, 1). */
function seeded(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1_103_515_245 + 12_345) % 2 ** 31;
    return s / 2 ** 31;
  };
}

describe('retryDelayMs', () => {
  it('stays between half the exponential delay and the full delay', () => {
    const random = seeded(7);
    for (let failures = 1; failures <= 8; failures += 1) {
      const exp = 100 * 2 ** (failures - 1);
      for (let i = 0; i < 200; i += 1) {
        const delay = retryDelayMs(failures, 100, 1_000_000, random);
        expect(delay).toBeGreaterThanOrEqual(exp / 2);
        expect(delay).toBeLessThanOrEqual(exp);
      }
    }
  });

  it('reaches both ends of the range with the extreme random values', () => {
    expect(retryDelayMs(3, 1000, 1_000_000, () => 0)).toBe(2000);
    expect(retryDelayMs(3, 1000, 1_000_000, () => 0.999_999)).toBe(4000);
  });

  it('is capped at the maximum delay however many failures there were', () => {
    const random = seeded(3);
    for (const failures of [5, 10, 50, 2000]) {
      for (let i = 0; i < 50; i += 1) {
        const delay = retryDelayMs(failures, 1000, 5000, random);
        expect(delay).toBeGreaterThanOrEqual(2500);
        expect(delay).toBeLessThanOrEqual(5000);
        expect(Number.isFinite(delay)).toBe(true);
      }
    }
  });

  it('grows with each failure until the cap', () => {
    const delays = [1, 2, 3, 4, 5, 6].map((f) => retryDelayMs(f, 1000, 20_000, () => 0.5));
    expect(delays).toEqual([750, 1500, 3000, 6000, 12_000, 15_000]);
    for (let i = 1; i < delays.length; i += 1) expect(delays[i]!).toBeGreaterThan(delays[i - 1]!);
  });

  it('treats zero failures like the first', () => {
    expect(retryDelayMs(0, 1000, 60_000, () => 0.5)).toBe(retryDelayMs(1, 1000, 60_000, () => 0.5));
  });

  it('is a whole number of milliseconds', () => {
    const random = seeded(11);
    for (let i = 0; i < 100; i += 1)
      expect(Number.isInteger(retryDelayMs(2, 333, 10_000, random))).toBe(true);
  });
});
