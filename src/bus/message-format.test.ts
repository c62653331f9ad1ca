import { describe, expect, it } from 'vitest';
import { noticeMessage, parseNotice } from './message-format.js';

const event = { eventId: 'e-1', type: 'file.uploaded', correlationId: 'c-1' };

describe('noticeMessage', () => {
  it('addresses the message by event id and topic by event type', () => {
    const message = noticeMessage(event);
    expect(message.id).toBe('e-1');
    expect(message.topic).toBe('file.uploaded');
    expect(JSON.parse(message.body)).toEqual(event);
  });

  it('carries only the pointer, never metadata or files', () => {
    const message = noticeMessage({
      ...event,
      data: [{ key: 'secret', value: 's' }],
      files: [],
    } as typeof event);
    expect(Object.keys(JSON.parse(message.body) as object).sort()).toEqual([
      'correlationId',
      'eventId',
      'type',
    ]);
  });
});

describe('parseNotice', () => {
  it('reads back what noticeMessage wrote', () => {
    expect(parseNotice(noticeMessage(event))).toEqual(event);
  });

  it('explains a body that is not JSON, quoting at most 80 characters of it', () => {
    const body = `not json ${'x'.repeat(200)}`;
    const reason = parseNotice({ id: 'm', topic: 't', body });
    expect(typeof reason).toBe('string');
    expect(reason).toContain('not JSON');
    expect(reason).toContain('not json');
    expect((reason as string).length).toBeLessThan(140);
  });

  it('explains a body that is not an object', () => {
    expect(parseNotice({ id: 'm', topic: 't', body: 'null' })).toBe('body is not a JSON object');
    expect(parseNotice({ id: 'm', topic: 't', body: '42' })).toBe('body is not a JSON object');
    expect(parseNotice({ id: 'm', topic: 't', body: '"text"' })).toBe('body is not a JSON object');
  });

  it('names the first missing field', () => {
    expect(
      parseNotice({ id: 'm', topic: 't', body: JSON.stringify({ type: 'a', correlationId: 'c' }) }),
    ).toBe('body has no eventId');
    expect(
      parseNotice({
        id: 'm',
        topic: 't',
        body: JSON.stringify({ eventId: '', type: 'a', correlationId: 'c' }),
      }),
    ).toBe('body has no eventId');
    expect(
      parseNotice({
        id: 'm',
        topic: 't',
        body: JSON.stringify({ eventId: 'e', correlationId: 'c' }),
      }),
    ).toBe('body has no type');
    expect(
      parseNotice({ id: 'm', topic: 't', body: JSON.stringify({ eventId: 'e', type: 'a' }) }),
    ).toBe('body has no correlationId');
    expect(
      parseNotice({
        id: 'm',
        topic: 't',
        body: JSON.stringify({ eventId: 7, type: 'a', correlationId: 'c' }),
      }),
    ).toBe('body has no eventId');
  });

  it('drops fields it does not know', () => {
    expect(
      parseNotice({ id: 'm', topic: 't', body: JSON.stringify({ ...event, extra: 'x' }) }),
    ).toEqual(event);
  });
});

describe('trace context in a notice', () => {
  it('round-trips traceparent and tracestate, and leaves them out when not given', () => {
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const message = noticeMessage(event, null, { traceparent, tracestate: 'ion=1' });
    expect(parseNotice(message)).toEqual({ ...event, traceparent, tracestate: 'ion=1' });
    expect(Object.keys(JSON.parse(noticeMessage(event).body) as object)).not.toContain(
      'traceparent',
    );
  });

  it('ignores a trace context that is not a string instead of rejecting the message', () => {
    const body = JSON.stringify({ ...event, traceparent: 42, tracestate: 'x' });
    expect(parseNotice({ id: 'm', topic: 't', body })).toEqual(event);
  });
});
