import { randomUUID } from 'node:crypto';
import type { ConsumerInfo, JetStreamClient, JetStreamManager, NatsConnection } from 'nats';
import {
  NotFoundError,
  UnavailableError,
  ValidationError,
  wrapDriverError,
} from '../../core/errors.js';
import type {
  BusCapabilities,
  BusMessage,
  ConsumeOptions,
  Delivery,
  EventBus,
  QueueDepth,
  SubscriptionSpec,
} from '../event-bus.js';
import { NatsNames, checkTopic, checkedMessage } from './nats-names.js';
import { checkSubscriptionSpec } from '../checks.js';
import {
  CONSUMER_NOT_FOUND,
  consumerConfig,
  consumersOf,
  deleteConsumer,
  ensureStream,
  isApiError,
  loadMeta,
  metaOf,
} from './nats-admin.js';
import { ADAPTER, type LiveEntry, type SubscriptionMeta, liveKey } from './nats-delivery.js';
import { SubscriptionPuller } from './nats-subscription-puller.js';

/** Options of {@link NatsEventBus}. */
export interface NatsEventBusOptions {
  /** NATS server URL(s), e.g. `nats://127.0.0.1:4222`. */
  servers: string | string[];
  /** JetStream stream holding every message of this bus; created on start if absent. */
  stream: string;
  /** Subject prefix of the stream (`<prefix>.>`). Default: the stream name. */
  subjectPrefix?: string;
  /**
   * How long one pull request waits on the server for messages (default 10 000 ms). Shorter
   * notices binding changes made by other processes sooner; longer costs fewer requests.
   */
  pullExpiresMs?: number;
  logger?: { warn(obj: object, msg?: string): void };
}

type Nats = typeof import('nats');

interface Connected {
  nats: Nats;
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
}

/**
 * The distributed event bus on NATS JetStream (server 2.9 or later).
 *
 * Layout: one stream (`stream`, limits retention with a 7-day max age, file storage, subjects
 * `<prefix>.>`). A
 * publish goes to `<prefix>.t.<topic>` with `Nats-Msg-Id` = the message id, so the stream's
 * 2-minute duplicate window keeps one copy per id; `sendTo` goes to
 * `<prefix>.s.<subscription>` with a unique msg id (a new message, so its delivery count
 * restarts at 1). Ion's id and topic travel in the `Ion-Id` / `Ion-Topic` headers (URI-encoded).
 *
 * A subscription is a set of durable pull consumers, named `<key>__...` where `<key>` is the
 * encoded subscription name (see {@link encodeName}): one per bound topic (`<key>__t-<topic>`,
 * filter `<prefix>.t.<topic>`) and the direct one (`<key>__d`, filter `<prefix>.s.<key>`),
 * since NATS 2.9 cannot filter several subjects in one consumer. All use explicit acks,
 * `ack_wait` = `leaseMs`, and `deliver_policy: new`, so messages published before a binding
 * existed are not delivered. The direct consumer's description holds the subscription's
 * metadata (topics, lease) and marks that it exists. `ensureSubscription` creates or updates
 * the consumers, then deletes those of topics no longer bound; a consumer created again later
 * starts with new messages only.
 *
 * Consumption is described in {@link SubscriptionPuller}. Settles map to JetStream acks,
 * each confirmed by the server: ack `+ACK`, nack `-NAK` (with a delay), extend `+WPI`,
 * deadLetter `+TERM`; `deliveryCount` is the JetStream delivery count.
 *
 * Fencing: NATS acks by stream sequence, so a settle of a delivery whose lease lapsed would
 * apply to whoever holds the message now. A settle is therefore a no-op when this instance
 * has redelivered the message since (exact), and nack / extend / deadLetter are no-ops once
 * the lease lapsed by this process's clock (a safety margin of a tenth of the lease, at most
 * 1 s, before the server's). A late ack from another process is honoured, as in the SQLite
 * bus when nobody claimed the message yet; if someone did, that copy is then acked too.
 *
 * Limits: per-id dedupe lasts the duplicate window (2 min), not forever; `sendTo` leaves a
 * message alone only when it is in flight in this instance; bodies are bounded by the
 * server's `max_payload` (1 MiB by default).
 */
export class NatsEventBus implements EventBus {
  /** Per-id dedupe within the stream's duplicate window; every host reaches the broker. */
  readonly capabilities: BusCapabilities = Object.freeze({
    dedupesById: true,
    sharedAcrossHosts: true,
  });
  private readonly options: NatsEventBusOptions;
  private readonly names: NatsNames;
  private conn: Connected | undefined;
  private closing: Promise<void> | undefined;
  private readonly pullers = new Map<string, SubscriptionPuller>();
  private readonly live = new Map<string, LiveEntry>();
  private readonly encoder = new TextEncoder();

  constructor(options: NatsEventBusOptions) {
    if (!/^[A-Za-z0-9_-]+$/.test(options.stream)) {
      throw new ValidationError(`invalid NATS stream name "${options.stream}"`, [
        { path: 'stream', message: 'must be letters, digits, "_" and "-"' },
      ]);
    }
    const prefix = options.subjectPrefix ?? options.stream;
    checkTopic(prefix, 'subjectPrefix');
    this.options = options;
    this.names = new NatsNames(options.stream, prefix);
  }

  /** Connects (loading the `nats` driver lazily) and creates the stream if absent. Idempotent. */
  async start(): Promise<void> {
    if (this.conn) return;
    if (this.closing) throw new UnavailableError(`${ADAPTER}: closed`);
    let nc: NatsConnection | undefined;
    try {
      const nats = await import('nats');
      nc = await nats.connect({
        servers: this.options.servers,
        name: 'ion-event-bus',
        // Never give up on the broker: the driver's default (10 attempts, about 20 s) would
        // leave a long-running process disconnected for good after a longer outage.
        maxReconnectAttempts: -1,
      });
      const jsm = await nc.jetstreamManager({ checkAPI: false });
      await ensureStream(nats, jsm, this.names, this.options.logger);
      this.conn = { nats, nc, js: nc.jetstream(), jsm };
      void this.watchStatus(nats, nc);
    } catch (err) {
      await nc?.close().catch(() => undefined);
      throw wrapDriverError(ADAPTER, 'start', err);
    }
  }

  /** Idempotent. Ends every open iteration, then drains the connection. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      for (const puller of this.pullers.values()) puller.close();
      this.pullers.clear();
      const nc = this.conn?.nc;
      this.conn = undefined;
      if (nc && !nc.isClosed()) {
        await nc.drain().catch((err: unknown) => {
          this.options.logger?.warn({ err }, `${ADAPTER}: drain failed`);
        });
      }
    })();
    return this.closing;
  }

  async ensureSubscription(spec: SubscriptionSpec): Promise<void> {
    checkSubscriptionSpec(spec);
    spec.topics.forEach((topic, i) => checkTopic(topic, `topics[${i}]`));
    const topics = [...new Set(spec.topics)];
    const leaseMs = Math.round(spec.leaseMs);
    const { names } = this;
    await this.run('ensureSubscription', async ({ nats, jsm }) => {
      const existing = await consumersOf(jsm, names, spec.name);
      const wanted = new Set<string>();
      for (const topic of topics) {
        const durable = names.topicConsumer(spec.name, topic);
        wanted.add(durable);
        await jsm.consumers.add(
          names.stream,
          consumerConfig(nats, durable, names.topicSubject(topic), leaseMs),
        );
      }
      // The direct consumer last: its metadata only names consumers that exist.
      const direct = names.directConsumer(spec.name);
      const meta: SubscriptionMeta = { topics, leaseMs };
      await jsm.consumers.add(names.stream, {
        ...consumerConfig(nats, direct, names.directSubject(spec.name), leaseMs),
        description: JSON.stringify(meta),
      });
      for (const durable of existing) {
        if (durable !== direct && !wanted.has(durable)) await deleteConsumer(jsm, names, durable);
      }
    });
    this.pullers.get(spec.name)?.invalidate();
  }

  async deleteSubscription(name: string): Promise<void> {
    const direct = this.names.directConsumer(name);
    await this.run('deleteSubscription', async ({ jsm }) => {
      // The direct consumer first: the subscription stops existing before its topics go.
      await deleteConsumer(jsm, this.names, direct);
      for (const durable of await consumersOf(jsm, this.names, name))
        await deleteConsumer(jsm, this.names, durable);
    });
    this.pullers.get(name)?.invalidate();
  }

  async publish(message: BusMessage): Promise<void> {
    const m = checkedMessage(message);
    await this.publishTo('publish', this.names.topicSubject(m.topic), m, encodeURIComponent(m.id));
  }

  async sendTo(subscription: string, message: BusMessage): Promise<void> {
    const m = checkedMessage(message);
    const meta = await this.run('sendTo', ({ jsm }) => loadMeta(jsm, this.names, subscription));
    if (!meta) throw new NotFoundError(`subscription "${subscription}" does not exist`);
    const inFlight = this.live.get(liveKey(subscription, m.id));
    if (inFlight && inFlight.leaseEndsAt > Date.now()) return; // its consumer will settle it
    const msgId = `${encodeURIComponent(m.id)}~${randomUUID()}`;
    await this.publishTo('sendTo', this.names.directSubject(subscription), m, msgId);
  }

  /**
   * Pull-based consumption. The first `next()` rejects with NotFoundError when the
   * subscription does not exist; waiting ones reject when it is deleted meanwhile.
   */
  consume(subscription: string, options: ConsumeOptions): AsyncIterable<Delivery> {
    let finished = false;
    let loaded = false;
    const done = (): IteratorResult<Delivery> => {
      finished = true;
      return { done: true, value: undefined };
    };
    const iterator: AsyncIterator<Delivery> = {
      next: async () => {
        if (this.closing || options.signal.aborted || finished) return done();
        const puller = this.puller(subscription);
        if (!loaded) {
          try {
            await puller.load();
          } catch (err) {
            if (this.closing) return done(); // closed meanwhile: the load's request was cut
            throw err;
          }
          loaded = true;
        }
        const delivery = await puller.take(options.signal);
        return delivery ? { done: false, value: delivery } : done();
      },
      return: () => Promise.resolve(done()),
    };
    return { [Symbol.asyncIterator]: () => iterator };
  }

  /**
   * Sums the subscription's consumers (one per bound topic plus the direct one that redrive
   * and replay send to): `ready` = `num_pending` (stored, not yet delivered), `inFlight` =
   * `num_ack_pending`. JetStream keeps a message in its ack-pending set until it is acked or
   * delivered again, so here a message nacked with a delay, or whose lease lapsed, counts
   * as in flight until its redelivery (the SQLite and RabbitMQ buses count it as ready);
   * messages this process fetched but holds for a consumer that stopped waiting count as in
   * flight too. Counts every process. Rejects with NotFoundError when the subscription does
   * not exist; a topic consumer missing for a moment (an ensure in progress) counts as empty.
   */
  async depth(subscription: string): Promise<QueueDepth> {
    const { names } = this;
    return this.run('depth', async ({ jsm }) => {
      const infoOf = (durable: string) => jsm.consumers.info(names.stream, durable);
      let direct: ConsumerInfo;
      try {
        direct = await infoOf(names.directConsumer(subscription));
      } catch (err) {
        if (!isApiError(err, CONSUMER_NOT_FOUND)) throw err;
        throw new NotFoundError(`subscription "${subscription}" does not exist`, { cause: err });
      }
      const topics = await Promise.all(
        metaOf(direct).topics.map((topic) =>
          infoOf(names.topicConsumer(subscription, topic)).catch((err: unknown) => {
            if (isApiError(err, CONSUMER_NOT_FOUND)) return undefined;
            throw err;
          }),
        ),
      );
      const depth: QueueDepth = { ready: 0, inFlight: 0 };
      for (const info of [direct, ...topics]) {
        if (info === undefined) continue;
        depth.ready += info.num_pending;
        depth.inFlight += info.num_ack_pending;
      }
      return depth;
    });
  }

  /** Tells the pullers when the connection comes back (see {@link SubscriptionPuller.reconnected}). */
  private async watchStatus(nats: Nats, nc: NatsConnection): Promise<void> {
    try {
      for await (const status of nc.status()) {
        if (status.type !== nats.Events.Reconnect) continue;
        for (const puller of this.pullers.values()) puller.reconnected();
      }
    } catch (err) {
      this.options.logger?.warn({ err }, `${ADAPTER}: connection status watch failed`);
    }
  }

  private puller(subscription: string): SubscriptionPuller {
    let puller = this.pullers.get(subscription);
    if (!puller) {
      const { nats, nc } = this.connected();
      const ctx = {
        nc,
        names: this.names,
        logger: this.options.logger,
        live: this.live,
        pullExpiresMs: this.options.pullExpiresMs ?? 10_000,
        loadMeta: (name: string) => loadMeta(this.connected().jsm, this.names, name),
      };
      puller = new SubscriptionPuller(ctx, subscription, nats.createInbox());
      this.pullers.set(subscription, puller);
    }
    return puller;
  }

  private async publishTo(action: string, subject: string, m: BusMessage, msgID: string) {
    await this.run(action, async ({ nats, js }) => {
      const headers = nats.headers();
      headers.set('Ion-Id', encodeURIComponent(m.id));
      headers.set('Ion-Topic', encodeURIComponent(m.topic));
      try {
        await js.publish(subject, this.encoder.encode(m.body), {
          msgID,
          headers,
          expect: { streamName: this.names.stream },
        });
      } catch (err) {
        // Not retryable: the same message will never fit.
        if ((err as { code?: string }).code !== 'MAX_PAYLOAD_EXCEEDED') throw err;
        const issue = { path: 'body', message: "exceeds the NATS server's max_payload" };
        throw new ValidationError(`invalid bus message: ${issue.path} ${issue.message}`, [issue], {
          cause: err,
        });
      }
    });
  }

  private connected(): Connected {
    if (!this.conn) {
      throw new UnavailableError(`${ADAPTER}: ${this.closing ? 'closed' : 'not started'}`);
    }
    return this.conn;
  }

  /** Runs driver calls, wrapping driver errors (IonErrors pass through unchanged). */
  private async run<T>(action: string, fn: (c: Connected) => Promise<T>): Promise<T> {
    const c = this.connected();
    try {
      return await fn(c);
    } catch (err) {
      throw wrapDriverError(ADAPTER, action, err);
    }
  }
}
