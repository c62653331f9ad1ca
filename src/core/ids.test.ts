import { describe, expect, it } from 'vitest';
import { childEventId, jobIdFor, newId, rootEventIdFromKey, settledEventId } from './ids.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const NAME_BASED = /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('childEventId', () => {
  it('is the same for the same parent, module and event file, so a retry re-creates the same child', () => {
    expect(childEventId('p1', 'split', 'a.json')).toBe(childEventId('p1', 'split', 'a.json'));
  });

  it('differs when the parent, the module or the file name differs', () => {
    const ids = new Set([
      childEventId('p1', 'split', 'a.json'),
      childEventId('p2', 'split', 'a.json'),
      childEventId('p1', 'merge', 'a.json'),
      childEventId('p1', 'split', 'b.json'),
    ]);
    expect(ids.size).toBe(4);
  });

  it('does not collide when parts are shifted between fields', () => {
    expect(childEventId('p1', 'split', 'x.json')).not.toBe(childEventId('p1s', 'plit', 'x.json'));
    expect(childEventId('p', 'ab', 'c')).not.toBe(childEventId('p', 'a', 'bc'));
  });

  it('is a name-based (version 5, RFC 4122 variant) UUID', () => {
    expect(childEventId('p1', 'split', 'a.json')).toMatch(NAME_BASED);
  });
});

describe('jobIdFor', () => {
  it('is deterministic per (module, event) and distinct otherwise', () => {
    expect(jobIdFor('split', 'e1')).toBe(jobIdFor('split', 'e1'));
    expect(jobIdFor('split', 'e1')).not.toBe(jobIdFor('split', 'e2'));
    expect(jobIdFor('split', 'e1')).not.toBe(jobIdFor('merge', 'e1'));
    expect(jobIdFor('split', 'e1')).toMatch(NAME_BASED);
  });

  it('never equals a child event id or root id built from the same text', () => {
    expect(jobIdFor('split', 'e1')).not.toBe(childEventId('split', 'e1', ''));
    expect(rootEventIdFromKey('k')).not.toBe(jobIdFor('k', ''));
  });
});

describe('rootEventIdFromKey and newId', () => {
  it('derives the same root id from the same idempotency key and different ids from different keys', () => {
    expect(rootEventIdFromKey('order-42')).toBe(rootEventIdFromKey('order-42'));
    expect(rootEventIdFromKey('order-42')).not.toBe(rootEventIdFromKey('order-43'));
    expect(rootEventIdFromKey('order-42')).toMatch(NAME_BASED);
  });

  it('newId gives a fresh random UUID each time', () => {
    const ids = new Set(Array.from({ length: 100 }, () => newId()));
    expect(ids.size).toBe(100);
    for (const id of ids) expect(id).toMatch(UUID);
  });
});

describe('settledEventId', () => {
  it('is one id per correlation id, distinct from the root and child ids built from it', () => {
    const correlationId = '2b0c5d9e-0000-4000-8000-000000000001';
    expect(settledEventId(correlationId)).toBe(settledEventId(correlationId));
    expect(settledEventId(correlationId)).not.toBe(settledEventId(`${correlationId}x`));
    expect(settledEventId(correlationId)).not.toBe(rootEventIdFromKey(correlationId));
    expect(settledEventId(correlationId)).toMatch(NAME_BASED);
  });
});
