import { createHash } from 'node:crypto';
import { ValidationError } from '../../core/errors.js';
import type { BusMessage } from '../event-bus.js';
import { checkedMessage as checkMessageShape } from '../checks.js';

/**
 * Naming of the JetStream objects behind {@link NatsEventBus}. Subjects and consumer names
 * allow fewer characters than subscription names and topics, so names are encoded.
 */

/** Dot-separated words: a topic that is also a valid sequence of subject tokens. */
const TOPIC = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
/** Consumer names longer than this are hashed (file storage uses them as directory names). */
const MAX_READABLE = 120;

/**
 * Encodes any string into `[A-Za-z0-9_-]`: those characters except `_` are kept, every other
 * UTF-8 byte becomes `_XX` (upper-case hex). Injective, a valid subject token and consumer
 * name, and never contains `__`, which therefore separates a subscription's key from the
 * rest of its consumer names.
 */
export function encodeName(name: string): string {
  let out = '';
  for (const byte of Buffer.from(name, 'utf8')) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9-]/.test(c) ? c : `_${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** Every JetStream name of one stream, derived from the stream name and subject prefix. */
export class NatsNames {
  constructor(
    readonly stream: string,
    readonly prefix: string,
  ) {}

  /** Subject of a topic: the topic itself under `<prefix>.t.` (topics are checked first). */
  topicSubject(topic: string): string {
    return `${this.prefix}.t.${topic}`;
  }

  /** Subject of the messages sent to one subscription only (sendTo). */
  directSubject(subscription: string): string {
    return `${this.prefix}.s.${encodeName(subscription)}`;
  }

  /** All consumers of a subscription start with this. */
  consumerPrefix(subscription: string): string {
    return `${encodeName(subscription)}__`;
  }

  /** The consumer of the direct subject; its description holds the subscription's metadata. */
  directConsumer(subscription: string): string {
    return `${this.consumerPrefix(subscription)}d`;
  }

  topicConsumer(subscription: string, topic: string): string {
    const readable = `${this.consumerPrefix(subscription)}t-${encodeName(topic)}`;
    if (readable.length <= MAX_READABLE) return readable;
    const hash = createHash('sha256').update(topic).digest('hex').slice(0, 32);
    return `${this.consumerPrefix(subscription)}h-${hash}`;
  }
}

export function checkTopic(topic: string, path = 'topic'): void {
  if (!TOPIC.test(topic)) {
    throw new ValidationError(
      `invalid ${path} "${topic}": must be dot-separated words of letters, digits, "_" and "-"`,
      [{ path, message: 'must be dot-separated words of [A-Za-z0-9_-]' }],
    );
  }
}

/** Checks the shape (callers may bypass types) and that the topic is a valid subject part. */
export function checkedMessage(message: BusMessage): BusMessage {
  const checked = checkMessageShape(message);
  checkTopic(checked.topic);
  return checked;
}
