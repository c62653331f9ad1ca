import type { Command } from 'commander';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiError, type EventView, type IonClient } from '../../api/client.js';
import { errorMessage } from '../../core/errors.js';
import type { Job } from '../../core/types.js';
import { type ApiOptions, type CliContext } from '../context.js';
import { SseParser, readSse, type SseMessage } from '../sse.js';

/** `HH:MM:SS` of an ISO time, in the local time zone; the text itself when it is not a time. */
function clockTime(iso: string): string {
  const ms = Date.parse(iso);
  if (Number.isNaN(ms)) return iso;
  const d = new Date(ms);
  return [d.getHours(), d.getMinutes(), d.getSeconds()]
    .map((n) => String(n).padStart(2, '0'))
    .join(':');
}

const oneLine = (text: string): string => text.replace(/\s*[\r\n]+\s*/g, ' ');

/**
 * One human line per live stream message:
 * `12:00:01 job   split  <jobId> running (attempt 1)` or
 * `12:00:01 event doc.new <eventId> from api`. A failed job adds its last error. A message
 * of a type this CLI does not know is shown as its type and data.
 */
export function formatLiveMessage(message: SseMessage, timeOf = clockTime): string {
  let data: unknown;
  try {
    data = JSON.parse(message.data);
  } catch {
    data = undefined;
  }
  if (message.event === 'job' && typeof data === 'object' && data !== null) {
    const job = data as Job;
    const attempt = job.attempts > 0 ? ` (attempt ${job.attempts})` : '';
    const error =
      job.lastError !== null && job.state !== 'succeeded' ? `: ${oneLine(job.lastError)}` : '';
    return `${timeOf(job.updatedAt)} job   ${job.module}  ${job.jobId} ${job.state}${attempt}${error}`;
  }
  if (message.event === 'event' && typeof data === 'object' && data !== null) {
    const event = data as EventView;
    return `${timeOf(event.createdAt)} event ${event.type} ${event.eventId} from ${event.source}`;
  }
  return `${message.event} ${oneLine(message.data)}`;
}

/** Waits before reconnection `n` (0-based) after a drop: 250 ms, doubling, at most 5 s. */
export function reconnectDelayMs(n: number): number {
  return Math.min(5_000, 250 * 2 ** Math.min(n, 10));
}

/** With no byte for this long (the server writes a keepalive every 15 s), the link is dead. */
const IDLE_MS = 45_000;

export interface WatchOptions {
  filter: { correlationId?: string; module?: string };
  /** Called with each message, in order. */
  onMessage: (message: SseMessage) => void;
  /** Connection notes (watching, lost, reconnected): stderr in the CLI. */
  note: (text: string) => void;
  /** Ends the watch (Ctrl-C): `watchLive` then returns normally. */
  signal: AbortSignal;
}

/**
 * Follows the live stream until `signal` aborts. A connection that drops (or goes silent) is
 * opened again after a short backoff with `Last-Event-ID` of the last message received, so the
 * server sends what happened meanwhile and nothing is missed or repeated. Failing to open the
 * first connection throws, as does any 4xx answer (auth, a cursor too far behind): retrying
 * would get the same answer. An unreachable server or a 5xx after the first connection is
 * retried for as long as it takes.
 */
export async function watchLive(client: IonClient, options: WatchOptions): Promise<void> {
  const { signal } = options;
  const parser = new SseParser();
  let connectedOnce = false;
  let failures = 0;
  while (!signal.aborted) {
    parser.reset();
    const connection = new AbortController();
    const stop = () => connection.abort();
    signal.addEventListener('abort', stop, { once: true });
    let idle: NodeJS.Timeout | undefined;
    let silent = false;
    let reason: string;
    try {
      const body = await client.openLiveStream(options.filter, {
        lastEventId: parser.lastEventId,
        signal: connection.signal,
      });
      options.note(connectedOnce ? 'reconnected' : 'watching; press Ctrl-C to stop');
      connectedOnce = true;
      failures = 0;
      const armIdle = () => {
        clearTimeout(idle);
        idle = setTimeout(() => {
          silent = true;
          connection.abort();
        }, IDLE_MS);
      };
      armIdle();
      for await (const message of readSse(tapped(body, armIdle), parser))
        options.onMessage(message);
      reason = 'the server ended the stream';
    } catch (err) {
      if (signal.aborted) break;
      if (!connectedOnce || (err instanceof ApiError && err.status < 500)) throw err;
      reason = silent ? `no data for ${IDLE_MS / 1000} s` : errorMessage(err);
    } finally {
      clearTimeout(idle);
      signal.removeEventListener('abort', stop);
      connection.abort();
    }
    if (signal.aborted) break;
    const delayMs = reconnectDelayMs(failures);
    failures += 1;
    options.note(
      failures === 1
        ? `connection lost (${reason}); reconnecting in ${delayMs} ms`
        : `cannot reconnect (${reason}); trying again in ${delayMs} ms`,
    );
    try {
      await sleep(delayMs, undefined, { signal });
    } catch {
      break; // aborted while waiting
    }
  }
}

/** The chunks of `body`, calling `onChunk` as each arrives (the idle watchdog). */
async function* tapped(body: Readable, onChunk: () => void): AsyncGenerator<Uint8Array> {
  for await (const chunk of body as AsyncIterable<Uint8Array>) {
    onChunk();
    yield chunk;
  }
}

export function registerWatch(program: Command, ctx: CliContext): void {
  program
    .command('watch')
    .description('follow job and event changes live, until Ctrl-C (reconnects by itself)')
    .option('--correlation-id <id>', 'only this trace')
    .option('--module <name>', "only this module's jobs and the events it raised")
    .option('--json', "print each message's JSON data, one per line")
    .action(
      async (options: ApiOptions & { correlationId?: string; module?: string; json?: boolean }) => {
        const client = ctx.clientFor(options);
        const done = new AbortController();
        const stop = () => done.abort();
        // Ctrl-C (or a closed pipe, as with `| head`) ends the watch normally: exit code 0.
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
        ctx.stdout.on('error', stop);
        try {
          await watchLive(client, {
            filter: {
              ...(options.correlationId === undefined
                ? {}
                : { correlationId: options.correlationId }),
              ...(options.module === undefined ? {} : { module: options.module }),
            },
            onMessage: (message) =>
              ctx.print(options.json === true ? message.data : formatLiveMessage(message)),
            note: (text) => void ctx.stderr.write(`${text}\n`),
            signal: done.signal,
          });
        } finally {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          ctx.stdout.off('error', stop);
        }
      },
    );
}
