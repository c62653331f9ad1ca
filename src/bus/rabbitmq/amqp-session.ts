import type { Channel, ChannelModel, ConfirmChannel, Options } from 'amqplib';
import { UnavailableError, wrapDriverError } from '../../core/errors.js';

/** Prefix of every error and log line of the RabbitMQ adapter. */
export const ADAPTER = 'rabbitmq-bus';

export type BusLogger = { warn(obj: object, msg?: string): void };

/** True when `err` is the broker's 404 (a queue or exchange that does not exist). */
export function isNotFound(err: unknown): boolean {
  return (err as { code?: unknown } | undefined)?.code === 404;
}

/**
 * One AMQP connection of a bus instance, opened lazily and re-opened on the next use after
 * the broker dropped it. Every connection and channel gets 'error' listeners, so a broker
 * failure is logged and surfaces as a rejected operation, never as an unhandled 'error'
 * event that would crash the process.
 *
 * Publishes go through one shared confirm channel: `publish()` resolves only once the
 * broker confirmed the message (it is then routed and, being persistent, on disk).
 */
export class AmqpSession {
  private model: ChannelModel | undefined;
  private connecting: Promise<ChannelModel> | undefined;
  private publisher: Promise<ConfirmChannel> | undefined;
  private closed = false;

  constructor(
    private readonly url: string,
    private readonly logger: BusLogger | undefined,
  ) {}

  get isClosed(): boolean {
    return this.closed;
  }

  /** The live connection, connecting first if needed. */
  async connection(): Promise<ChannelModel> {
    if (this.closed) throw new UnavailableError(`${ADAPTER}: closed`);
    if (this.model) return this.model;
    this.connecting ??= this.open().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async open(): Promise<ChannelModel> {
    // Loaded lazily: users of the embedded bus never need amqplib at run time.
    const amqp = await import('amqplib');
    const model = await amqp.connect(this.url);
    model.on('error', (err: Error) => {
      this.logger?.warn({ err }, `${ADAPTER}: connection error`);
    });
    model.on('close', () => {
      if (this.model !== model) return;
      this.model = undefined;
      this.publisher = undefined;
      if (!this.closed) {
        this.logger?.warn({}, `${ADAPTER}: connection closed; reconnecting on next use`);
      }
    });
    if (this.closed) {
      await model.close().catch(() => undefined);
      throw new UnavailableError(`${ADAPTER}: closed`);
    }
    this.model = model;
    return model;
  }

  /** A new channel with an 'error' listener (a channel-level error closes only that channel). */
  async channel(): Promise<Channel> {
    const ch = await (await this.connection()).createChannel();
    ch.on('error', (err: Error) => {
      // 404s are expected (existence checks); anything else is worth a line.
      if (!isNotFound(err)) this.logger?.warn({ err }, `${ADAPTER}: channel error`);
    });
    return ch;
  }

  /** Runs `fn` on a throwaway channel (confirm mode if asked) and closes it afterwards. */
  async withChannel<T>(
    action: string,
    fn: (ch: ConfirmChannel) => Promise<T>,
    confirm = false,
  ): Promise<T> {
    let ch: Channel | undefined;
    try {
      const model = await this.connection();
      ch = confirm ? await model.createConfirmChannel() : await model.createChannel();
      ch.on('error', () => undefined); // the failing operation rejects with the same error
      return await fn(ch as ConfirmChannel);
    } catch (err) {
      throw wrapDriverError(ADAPTER, action, err);
    } finally {
      await ch?.close().catch(() => undefined);
    }
  }

  /** Whether `queue` exists (checked on a throwaway channel: a 404 closes the channel). */
  async queueExists(queue: string): Promise<boolean> {
    try {
      await this.withChannel('checkQueue', (ch) => ch.checkQueue(queue));
      return true;
    } catch (err) {
      if (isNotFound((err as { cause?: unknown }).cause)) return false;
      throw err;
    }
  }

  /**
   * The ready messages of `queue` (AMQP's queue.declare-ok count: unacked deliveries are not
   * in it), or undefined when the queue does not exist.
   */
  async readyCount(queue: string): Promise<number | undefined> {
    try {
      return (await this.withChannel('checkQueue', (ch) => ch.checkQueue(queue))).messageCount;
    } catch (err) {
      if (isNotFound((err as { cause?: unknown }).cause)) return undefined;
      throw err;
    }
  }

  /** Publishes and resolves once the broker confirmed. */
  async publish(
    action: string,
    exchange: string,
    routingKey: string,
    content: Buffer,
    options: Options.Publish,
  ): Promise<void> {
    try {
      const ch = await this.confirmChannel();
      await new Promise<void>((resolve, reject) => {
        ch.publish(exchange, routingKey, content, options, (err: unknown) => {
          if (err) reject(err instanceof Error ? err : new Error('the broker nacked the message'));
          else resolve();
        });
      });
    } catch (err) {
      throw wrapDriverError(ADAPTER, action, err);
    }
  }

  /** Declares a queue on the shared confirm channel (used before publishing to it). */
  async assertQueue(queue: string, options: Options.AssertQueue): Promise<void> {
    try {
      await (await this.confirmChannel()).assertQueue(queue, options);
    } catch (err) {
      throw wrapDriverError(ADAPTER, 'assertQueue', err);
    }
  }

  private confirmChannel(): Promise<ConfirmChannel> {
    if (!this.publisher) {
      const opening = this.connection().then(async (model) => {
        const ch = await model.createConfirmChannel();
        ch.on('error', (err: Error) => {
          this.logger?.warn({ err }, `${ADAPTER}: publish channel error`);
        });
        ch.on('close', () => {
          if (this.publisher === opening) this.publisher = undefined;
        });
        return ch;
      });
      opening.catch(() => {
        if (this.publisher === opening) this.publisher = undefined;
      });
      this.publisher = opening;
    }
    return this.publisher;
  }

  /** Idempotent. Closing the connection returns every unacked delivery to its queue. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const model = this.model ?? (await this.connecting?.catch(() => undefined));
    this.model = undefined;
    this.publisher = undefined;
    await model?.close().catch(() => undefined);
  }
}
