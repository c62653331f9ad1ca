import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { SseParser, readSse, type SseMessage } from './sse.js';

/** Feeds `text` to a fresh parser one piece at a time, cut at every `|`. */
function parse(text: string): { messages: SseMessage[]; parser: SseParser } {
  const parser = new SseParser();
  const messages = text.split('|').flatMap((piece) => parser.push(piece));
  return { messages, parser };
}

describe('SseParser', () => {
  it('parses event, id and data fields and dispatches on a blank line', () => {
    const { messages, parser } = parse('event: job\nid: c1\ndata: {"a":1}\n\n');
    expect(messages).toEqual([{ event: 'job', data: '{"a":1}', id: 'c1' }]);
    expect(parser.lastEventId).toBe('c1');
  });

  it('joins multi-line data with newlines and defaults the type to message', () => {
    const { messages } = parse('data: first\ndata:second\ndata\ndata:  two spaces\n\n');
    expect(messages).toEqual([{ event: 'message', data: 'first\nsecond\n\n two spaces', id: '' }]);
  });

  it('skips comments and unknown fields, and ignores a block without data', () => {
    const { messages } = parse(': connected\nfoo: bar\n\n: keepalive\n\nevent: x\n\ndata: y\n\n');
    expect(messages).toEqual([{ event: 'message', data: 'y', id: '' }]);
  });

  it('takes the id of a block without data (a stream head) and carries it over', () => {
    const { messages, parser } = parse('retry: 2000\nid: head\n: connected\n\ndata: a\n\n');
    expect(parser.retryMs).toBe(2000);
    expect(messages).toEqual([{ event: 'message', data: 'a', id: 'head' }]);
    expect(parser.lastEventId).toBe('head');
  });

  it('does not move the last id for a block that has not ended', () => {
    const { messages, parser } = parse('id: one\ndata: 1\n\nid: two\ndata: 2\n');
    expect(messages.map((m) => m.id)).toEqual(['one']);
    expect(parser.lastEventId).toBe('one');
    parser.reset();
    expect(parser.push('data: 3\n\n')).toEqual([{ event: 'message', data: '3', id: 'one' }]);
  });

  it('handles CRLF and CR line ends, also split between chunks', () => {
    const { messages } = parse('event: a\r|\ndata: 1\r\n\r|\nevent: b\rdata: 2\r\r');
    expect(messages).toEqual([
      { event: 'a', data: '1', id: '' },
      { event: 'b', data: '2', id: '' },
    ]);
  });

  it('handles lines split anywhere between chunks', () => {
    const text = 'event: job\nid: c9\ndata: {"x":"y"}\n\n';
    for (let cut = 1; cut < text.length; cut++) {
      const { messages } = parse(`${text.slice(0, cut)}|${text.slice(cut)}`);
      expect(messages, `cut at ${cut}`).toEqual([{ event: 'job', data: '{"x":"y"}', id: 'c9' }]);
    }
  });

  it('drops a leading byte order mark and ignores an id with a NUL and a bad retry', () => {
    const { messages, parser } = parse('\uFEFFid: a\0b\nretry: soon\ndata: z\n\n');
    expect(messages).toEqual([{ event: 'message', data: 'z', id: '' }]);
    expect(parser.retryMs).toBeUndefined();
  });
});

describe('readSse', () => {
  it('decodes UTF-8 split between byte chunks', async () => {
    const bytes = new TextEncoder().encode('data: größe ✓\n\n');
    const chunks = Readable.from([...bytes].map((b) => new Uint8Array([b])));
    const out: SseMessage[] = [];
    for await (const m of readSse(chunks)) out.push(m);
    expect(out).toEqual([{ event: 'message', data: 'größe ✓', id: '' }]);
  });
});
