import { describe, expect, it } from 'vitest';
import { FrameSplitter } from './warm-frames.js';

const frame = (type: number, text: string): Buffer => {
  const payload = Buffer.from(text);
  const header = Buffer.alloc(8);
  header[0] = type;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
};

describe('FrameSplitter', () => {
  it('keeps stdout and stderr apart, also when frames are cut anywhere', () => {
    const bytes = Buffer.concat([frame(1, 'out one '), frame(2, 'err'), frame(1, 'out two')]);
    for (let cut = 1; cut < bytes.length; cut++) {
      const out: string[] = [];
      const err: string[] = [];
      const split = new FrameSplitter(
        (c) => out.push(c.toString()),
        (c) => err.push(c.toString()),
      );
      split.push(bytes.subarray(0, cut));
      split.push(bytes.subarray(cut));
      expect(out.join('')).toBe('out one out two');
      expect(err.join('')).toBe('err');
    }
  });
});
