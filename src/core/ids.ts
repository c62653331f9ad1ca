import { createHash, randomUUID } from 'node:crypto';

/** Formats 16 bytes of a sha256 digest as an RFC 4122 name-based (v5-style) UUID. */
function uuidFromHash(input: string): string {
  const b = createHash('sha256').update(input).digest().subarray(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x50;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export function newId(): string {
  return randomUUID();
}

/**
 * A child event's id is a pure function of its parent, the module that raised it and the
 * name of the event file, so a retried job re-creates the same children, never new ones. A
 * replayed job's children also depend on the replay, so a replay raises new events (which
 * flow downstream) while its own retries still re-create the same ones.
 */
export function childEventId(
  parentEventId: string,
  module: string,
  eventFileName: string,
  replayId: string | null = null,
): string {
  const base = `child\0${parentEventId}\0${module}\0${eventFileName}`;
  return uuidFromHash(replayId === null ? base : `${base}\0replay\0${replayId}`);
}

/**
 * A job is (module, eventId): its id is derived from both. A replay makes another job on the
 * same (module, eventId), whose id also derives from the replay.
 */
export function jobIdFor(module: string, eventId: string, replayId: string | null = null): string {
  const base = `job\0${module}\0${eventId}`;
  return uuidFromHash(replayId === null ? base : `${base}\0replay\0${replayId}`);
}

/** A root event published with an idempotency key gets an id derived from it. */
export function rootEventIdFromKey(idempotencyKey: string): string {
  return uuidFromHash(`root\0${idempotencyKey}`);
}

/**
 * The `ion.trace.settled` event of a trace has an id derived from its correlation id alone, so
 * however many processes raise it, and however often one retries after a crash, the store
 * keeps one event (insert-if-absent) and the bus carries one id.
 */
export function settledEventId(correlationId: string): string {
  return uuidFromHash(`settled\0${correlationId}`);
}
