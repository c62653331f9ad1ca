import type { ConsumerConfig, ConsumerInfo, JetStreamManager } from 'nats';
import type { NatsNames } from './nats-names.js';
import { ADAPTER, type SubscriptionMeta } from './nats-delivery.js';

/**
 * The JetStream objects behind {@link NatsEventBus}: the stream, the consumers of a
 * subscription and the metadata kept in its direct consumer. Internal to the NATS adapter;
 * every function takes the driver objects it works on.
 */

type Nats = typeof import('nats');

/** The per-id dedupe window: a message id published twice within it is stored once. */
const DUPLICATE_WINDOW_MS = 2 * 60 * 1000;
/**
 * How long the stream keeps a message (limits retention, see ensureStream): far longer than
 * any retry delay or lease, so only a subscription left unconsumed for a week loses messages.
 */
const MAX_AGE_MS = 7 * 24 * 60 * 60 * 1000;
export const MS = 1_000_000; // nanoseconds
/** JetStream API error codes. */
export const CONSUMER_NOT_FOUND = 10014;
const STREAM_NOT_FOUND = 10059;

export function isApiError(err: unknown, errCode: number): boolean {
  return (err as { api_error?: { err_code?: number } }).api_error?.err_code === errCode;
}

/** The subscription's metadata, kept in the description of its direct consumer. */
export function metaOf(direct: ConsumerInfo): SubscriptionMeta {
  const meta = JSON.parse(direct.config.description ?? '{}') as Partial<SubscriptionMeta>;
  return {
    topics: meta.topics ?? [],
    leaseMs: meta.leaseMs ?? (direct.config.ack_wait ?? 0) / MS,
  };
}

/** Creates the stream if absent; warns when an existing one still uses interest retention. */
export async function ensureStream(
  nats: Nats,
  jsm: JetStreamManager,
  names: NatsNames,
  logger: { warn(obj: object, msg?: string): void } | undefined,
): Promise<void> {
  const { stream, prefix } = names;
  try {
    const info = await jsm.streams.info(stream);
    if (info.config.retention === nats.RetentionPolicy.Interest)
      logger?.warn(
        { stream },
        `${ADAPTER}: stream ${stream} uses interest retention, which can lose messages when nats-server 2.9 restarts; recreate it (Ion creates it with limits retention)`,
      );
    return;
  } catch (err) {
    if (!isApiError(err, STREAM_NOT_FOUND)) throw err;
  }
  // Another instance creating it at the same moment is fine: same config, same answer.
  // Limits, not interest retention: on a restart, nats-server 2.9 recovers an interest
  // stream's consumers one by one, and each one recovered acks the messages below its ack
  // floor on every subject, deleting those the consumers not yet recovered still need (a
  // subscription behind another lost 24 of 25 messages in test/soak/nats-restart.test.ts).
  await jsm.streams.add({
    name: stream,
    subjects: [`${prefix}.>`],
    retention: nats.RetentionPolicy.Limits,
    max_age: MAX_AGE_MS * MS,
    storage: nats.StorageType.File,
    discard: nats.DiscardPolicy.Old,
    duplicate_window: DUPLICATE_WINDOW_MS * MS,
    num_replicas: 1,
  });
}

export function consumerConfig(
  nats: Nats,
  durable: string,
  filter: string,
  leaseMs: number,
): Partial<ConsumerConfig> {
  return {
    durable_name: durable,
    filter_subject: filter,
    ack_policy: nats.AckPolicy.Explicit,
    ack_wait: leaseMs * MS,
    deliver_policy: nats.DeliverPolicy.New,
    max_deliver: -1,
    max_ack_pending: 10_000,
  };
}

/** The subscription's metadata from its direct consumer; undefined when it does not exist. */
export async function loadMeta(
  jsm: JetStreamManager,
  names: NatsNames,
  subscription: string,
): Promise<SubscriptionMeta | undefined> {
  try {
    return metaOf(await jsm.consumers.info(names.stream, names.directConsumer(subscription)));
  } catch (err) {
    if (isApiError(err, CONSUMER_NOT_FOUND)) return undefined;
    throw err;
  }
}

/** Names of the subscription's consumers (all of them, even orphans of a failed ensure). */
export async function consumersOf(
  jsm: JetStreamManager,
  names: NatsNames,
  subscription: string,
): Promise<string[]> {
  const prefix = names.consumerPrefix(subscription);
  const found: string[] = [];
  for await (const info of jsm.consumers.list(names.stream)) {
    if (info.name.startsWith(prefix)) found.push(info.name);
  }
  return found;
}

export async function deleteConsumer(
  jsm: JetStreamManager,
  names: NatsNames,
  durable: string,
): Promise<void> {
  try {
    await jsm.consumers.delete(names.stream, durable);
  } catch (err) {
    if (!isApiError(err, CONSUMER_NOT_FOUND)) throw err;
  }
}
