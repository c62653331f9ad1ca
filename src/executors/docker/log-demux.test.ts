import { describe, expect, it } from 'vitest';
import { LogDemux } from './log-demux.js';

function frame(type: number, text: string): Buffer {
  const payload = Buffer.from(text);
  const header = Buffer.alloc(8);
  header[0] = type;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

async function demux(chunks: Buffer[]): Promise<{ text: string; demux: LogDemux }> {
  const d = new LogDemux();
  const parts: Buffer[] = [];
  d.on('data', (chunk: Buffer) => parts.push(chunk));
  const ended = new Promise((resolve) => d.once('end', resolve));
  for (const chunk of chunks) d.write(chunk);
  d.end();
  await ended;
  return { text: Buffer.concat(parts).toString(), demux: d };
}

describe('LogDemux', () => {
  it('joins stdout and stderr payloads in arrival order, frames split across chunks', async () => {
    const all = Buffer.concat([frame(1, 'out one\n'), frame(2, 'err\n'), frame(1, 'out two\n')]);
    const chunks = [all.subarray(0, 3), all.subarray(3, 13), all.subarray(13)];
    const { text, demux: d } = await demux(chunks);
    expect(text).toBe('out one\nerr\nout two\n');
    expect(d.payloadBytes).toBe(text.length);
    expect(d.corrupt).toBe(false);
  });

  it('passes nothing on from a stream that is not frames (an error written into it)', async () => {
    const error = Buffer.from('{"cause":"no such process","message":"failed to obtain logs"}');
    const { text, demux: d } = await demux([frame(1, 'before\n'), error]);
    expect(text).toBe('before\n');
    expect(d.corrupt).toBe(true);
    expect(d.payloadBytes).toBe('before\n'.length);
  });

  it('keeps and counts the payload of a frame cut off by the end of the stream', async () => {
    const cut = frame(1, 'whole line\n').subarray(0, 8 + 5);
    const { text, demux: d } = await demux([cut]);
    expect(text).toBe('whole');
    expect(d.payloadBytes).toBe(5);
  });
});
