import { ValidationError, type ValidationIssue } from '../core/errors.js';
import type { BusMessage, SubscriptionSpec } from './event-bus.js';

/**
 * Input checks every EventBus adapter applies: callers may bypass the types, and a bad
 * message or subscription must be refused with a ValidationError, not stored.
 */

/**
 * Checks a message's shape and returns only its fields. `maxTopicBytes` lets an adapter
 * add its broker's limit (AMQP routing keys: 255 bytes).
 */
export function checkedMessage(message: BusMessage, maxTopicBytes = Infinity): BusMessage {
  const { id, topic, body } = message as Partial<Record<keyof BusMessage, unknown>>;
  const issues: ValidationIssue[] = [];
  if (typeof id !== 'string' || id === '')
    issues.push({ path: 'id', message: 'must be a non-empty string' });
  if (typeof topic !== 'string' || topic === '') {
    issues.push({ path: 'topic', message: 'must be a non-empty string' });
  } else if (Buffer.byteLength(topic) > maxTopicBytes) {
    issues.push({ path: 'topic', message: `must be at most ${maxTopicBytes} bytes` });
  }
  if (typeof body !== 'string') issues.push({ path: 'body', message: 'must be a string' });
  if (issues.length > 0) {
    const detail = issues.map((i) => `${i.path} ${i.message}`).join(', ');
    throw new ValidationError(`invalid bus message: ${detail}`, issues);
  }
  return { id: message.id, topic: message.topic, body: message.body };
}

/** A subscription needs a name and a positive lease. */
export function checkSubscriptionSpec(spec: SubscriptionSpec): void {
  if (!spec.name || !Number.isFinite(spec.leaseMs) || spec.leaseMs <= 0) {
    const issue = {
      path: spec.name ? 'leaseMs' : 'name',
      message: 'must be positive / non-empty',
    };
    throw new ValidationError(`invalid subscription: ${issue.path} ${issue.message}`, [issue]);
  }
}
