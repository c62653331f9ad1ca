import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from './duration.js';

describe('parseDuration', () => {
  it('reads each unit', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('30s')).toBe(30_000);
    expect(parseDuration('10m')).toBe(600_000);
    expect(parseDuration('1h')).toBe(3_600_000);
  });

  it('adds up compound durations', () => {
    expect(parseDuration('1m30s')).toBe(90_000);
    expect(parseDuration('1h2m3s4ms')).toBe(3_723_004);
  });

  it('accepts fractions and surrounding spaces', () => {
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('  2m ')).toBe(120_000);
  });

  it('returns null for text that is not a duration', () => {
    for (const text of [
      '',
      '10',
      's',
      '10x',
      '-5s',
      '1 m',
      '1m 30s',
      'ten minutes',
      '1.s',
      '.5s',
    ]) {
      expect(parseDuration(text), text).toBeNull();
    }
  });
});

describe('formatDuration', () => {
  it('formats by magnitude', () => {
    expect(formatDuration(250)).toBe('250ms');
    expect(formatDuration(1500)).toBe('1.50s');
    expect(formatDuration(15_000)).toBe('15.0s');
    expect(formatDuration(90_000)).toBe('1m30s');
  });

  it('never shows 60 seconds in the seconds place', () => {
    expect(formatDuration(119_700)).toBe('2m0s');
  });
});
