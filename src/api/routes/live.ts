import { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { ValidationError } from '../../core/errors.js';
import type { IonEvent, Job } from '../../core/types.js';
import { errorBodySchema } from '../errors.js';
import type { RouteDeps } from './deps.js';

/**
 * The live stream: `GET /v1/stream` answers Server-Sent Events of job and event changes,
 * optionally only those of one correlation id or one module. It polls the document store (so
 * it sees changes made by workers in other processes) and stops polling when the client goes.
 *
 * Every message's `id` is a {@link LiveCursor}: how far each of the two feeds (jobs by
 * `updatedAt`, events by `createdAt`, ties by id) has been sent. A client that reconnects with
 * it (`Last-Event-ID`) first gets every change after it, in that order, then the live stream.
 */

export interface LiveOptions {
  /** How often the store is polled; default 500 ms. */
  pollMs?: number;
  /** How often a `: keepalive` comment is written; default 15 s. */
  keepaliveMs?: number;
}

/** Events created up to this long before the last poll are looked at again (late commits). */
const LOOKBACK_MS = 5_000;
/** Jobs looked at per poll: the most recently updated ones. */
const JOB_WINDOW = 1000;
const EVENT_PAGE = 1000;
/** The most events a reconnecting client is sent to catch up; further behind is refused. */
const MAX_CATCH_UP_EVENTS = 10 * EVENT_PAGE;

const filterString = { type: 'string', minLength: 1, maxLength: 500 } as const;

/** A place in one feed: the timestamp and id of a change, in the store's (timestamp, id) order. */
export interface FeedPosition {
  /** ISO 8601, as the stores write it (so text order is time order). */
  at: string;
  id: string;
}

/** The resumable cursor every message carries: the last job and event change sent so far. */
export interface LiveCursor {
  job: FeedPosition;
  event: FeedPosition;
}

/** Before every change: the position of a feed nothing of which has been sent. */
const ORIGIN: FeedPosition = { at: new Date(0).toISOString(), id: '' };

/** Whether `a` comes after `b` in a feed's (timestamp, id) order. */
export function isAfter(a: FeedPosition, b: FeedPosition): boolean {
  return a.at > b.at || (a.at === b.at && a.id > b.id);
}

const byPosition = (a: FeedPosition, b: FeedPosition): number =>
  isAfter(a, b) ? 1 : isAfter(b, a) ? -1 : 0;

const jobPosition = (job: Job): FeedPosition => ({ at: job.updatedAt, id: job.jobId });
const eventPosition = (event: IonEvent): FeedPosition => ({
  at: event.createdAt,
  id: event.eventId,
});

/** `[jobAt, jobId, eventAt, eventId]` as base64url JSON: opaque to clients, one SSE line. */
export function encodeLiveCursor(cursor: LiveCursor): string {
  const fields = [cursor.job.at, cursor.job.id, cursor.event.at, cursor.event.id];
  return Buffer.from(JSON.stringify(fields), 'utf8').toString('base64url');
}

const isIsoTime = (value: string): boolean => {
  const ms = Date.parse(value);
  return !Number.isNaN(ms) && new Date(ms).toISOString() === value;
};

/** Throws a ValidationError (400) for anything that is not a cursor this stream sent. */
export function decodeLiveCursor(value: string, where = 'Last-Event-ID'): LiveCursor {
  let fields: unknown;
  if (/^[A-Za-z0-9_-]{1,2000}$/.test(value)) {
    try {
      fields = JSON.parse(Buffer.from(value, 'base64url').toString('utf8'));
    } catch {
      // reported below
    }
  }
  if (
    Array.isArray(fields) &&
    fields.length === 4 &&
    fields.every((f) => typeof f === 'string') &&
    isIsoTime(fields[0] as string) &&
    isIsoTime(fields[2] as string)
  ) {
    const [jobAt, jobId, eventAt, eventId] = fields as [string, string, string, string];
    return { job: { at: jobAt, id: jobId }, event: { at: eventAt, id: eventId } };
  }
  throw new ValidationError(
    `invalid ${where}: pass the id of a message of this stream to resume after it`,
    [{ path: where, message: 'not a live stream message id' }],
  );
}

function eventView(event: IonEvent) {
  return {
    ...event,
    data: Object.fromEntries(event.data.map((kv) => [kv.key, kv.value])),
    metadata: event.data,
  };
}

const jobKey = (job: Job) => `${job.state}:${job.attempts}:${job.updatedAt}`;

const maxPosition = (positions: FeedPosition[], floor: FeedPosition): FeedPosition =>
  positions.reduce((max, p) => (isAfter(p, max) ? p : max), floor);

function tooFarBehind(what: string): ValidationError {
  return new ValidationError(
    `Last-Event-ID is too far behind: more than ${what} changed since; reconnect without it ` +
      'and catch up with GET /v1/events?since=... and GET /v1/jobs',
    [{ path: 'Last-Event-ID', message: 'too far behind to catch up' }],
  );
}

export function registerLiveRoutes(
  app: FastifyInstance,
  deps: RouteDeps,
  options: LiveOptions = {},
): void {
  const { control } = deps;
  const pollMs = options.pollMs ?? 500;
  const keepaliveMs = options.keepaliveMs ?? 15_000;
  /** The open streams' stoppers: a server shutting down ends them, so `close()` need not wait. */
  const open = new Set<() => void>();
  app.addHook('preClose', (done) => {
    for (const stop of open) stop();
    done();
  });

  app.get('/v1/stream', {
    config: { longLivedResponse: true },
    schema: {
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: {
          correlationId: filterString,
          module: filterString,
          lastEventId: { type: 'string', maxLength: 2000 },
        },
      },
      headers: {
        type: 'object',
        properties: { 'last-event-id': { type: 'string', maxLength: 2000 } },
      },
      response: {
        200: { description: 'text/event-stream: `event: job` and `event: event` messages' },
        400: errorBodySchema,
        500: errorBodySchema,
      },
    },
    handler: async (request, reply) => {
      const { correlationId, module, lastEventId } = request.query as {
        correlationId?: string;
        module?: string;
        lastEventId?: string;
      };
      // The header wins: a browser reconnecting keeps the URL it opened (and its query) but
      // sends the id of the last message it received. An empty id means none (SSE spec).
      const header = request.headers['last-event-id'];
      const resumeFrom =
        typeof header === 'string' && header !== ''
          ? decodeLiveCursor(header)
          : lastEventId !== undefined && lastEventId !== ''
            ? decodeLiveCursor(lastEventId, 'lastEventId')
            : null;
      const jobFilter = {
        limit: JOB_WINDOW,
        ...(module === undefined ? {} : { module }),
        ...(correlationId === undefined ? {} : { correlationId }),
      };

      /**
       * Events created since `since` (all pages, newest first). With `catchUpAfter`, refuses to
       * hold more than MAX_CATCH_UP_EVENTS that come after that position.
       */
      async function recentEvents(
        since: number | string,
        catchUpAfter?: FeedPosition,
      ): Promise<IonEvent[]> {
        const out: IonEvent[] = [];
        let newer = 0;
        let cursor: string | undefined;
        do {
          const page = await control.listEvents({
            since: typeof since === 'string' ? since : new Date(since).toISOString(),
            limit: EVENT_PAGE,
            ...(correlationId === undefined ? {} : { correlationId }),
            ...(module === undefined ? {} : { source: module }),
            ...(cursor === undefined ? {} : { cursor }),
          });
          out.push(...page.events);
          if (catchUpAfter !== undefined) {
            newer += page.events.filter((e) => isAfter(eventPosition(e), catchUpAfter)).length;
            if (newer > MAX_CATCH_UP_EVENTS) throw tooFarBehind(`${MAX_CATCH_UP_EVENTS} events`);
          }
          cursor = page.nextCursor ?? undefined;
        } while (cursor !== undefined);
        return out;
      }

      // The starting point, read before any byte of the stream is written so a store that is
      // unreachable (or a cursor too far behind) is answered in the error format. Without a
      // cursor, what exists now is not news; with one, the changes after it are sent first.
      let watermark = Date.now();
      const listed = await control.listJobs(jobFilter);
      let jobs = new Map(listed.map((j) => [j.jobId, jobKey(j)]));
      /** Events already sent (or existing at the start) within the look-back window. */
      const sentEvents = new Map<string, number>();
      const catchUp: { jobs: Job[]; events: IonEvent[] } = { jobs: [], events: [] };
      let position: LiveCursor;
      if (resumeFrom === null) {
        const baseline = await recentEvents(watermark - LOOKBACK_MS);
        for (const event of baseline) sentEvents.set(event.eventId, Date.parse(event.createdAt));
        position = {
          job: maxPosition(listed.map(jobPosition), ORIGIN),
          event: maxPosition(baseline.map(eventPosition), {
            at: new Date(watermark - LOOKBACK_MS).toISOString(),
            id: '',
          }),
        };
      } else {
        position = resumeFrom;
        catchUp.jobs = listed.filter((j) => isAfter(jobPosition(j), resumeFrom.job));
        // A full window of newer jobs may hide more beyond it: those changes cannot be sent.
        if (listed.length >= JOB_WINDOW && catchUp.jobs.length === listed.length)
          throw tooFarBehind(`${JOB_WINDOW} jobs`);
        const lookback = new Date(watermark - LOOKBACK_MS).toISOString();
        const since = resumeFrom.event.at < lookback ? resumeFrom.event.at : lookback;
        const events = await recentEvents(since, resumeFrom.event);
        // Those up to the cursor were sent before; those after it are sent now: all are seen.
        for (const event of events) sentEvents.set(event.eventId, Date.parse(event.createdAt));
        catchUp.events = events.filter((e) => isAfter(eventPosition(e), resumeFrom.event));
      }

      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      // An id-only block: a client that reconnects before any message still resumes from here.
      raw.write(`retry: 2000\nid: ${encodeLiveCursor(position)}\n: connected\n\n`);

      // An in-process request (`app.inject()`) has no client that could hang up: it gets the
      // stream's head and ends, rather than waiting forever.
      if (!(request.raw.socket instanceof Socket)) {
        raw.end();
        return;
      }

      let closed = false;
      let polling = false;
      /**
       * Writes one change and moves its feed's position forward (never back: a late commit
       * sent now keeps the position, so a resume never repeats what came before it).
       */
      const sendJob = (job: Job) => {
        if (closed) return;
        position = { ...position, job: maxPosition([jobPosition(job)], position.job) };
        raw.write(
          `event: job\nid: ${encodeLiveCursor(position)}\ndata: ${JSON.stringify(job)}\n\n`,
        );
      };
      const sendEvent = (event: IonEvent) => {
        if (closed) return;
        position = { ...position, event: maxPosition([eventPosition(event)], position.event) };
        raw.write(
          `event: event\nid: ${encodeLiveCursor(position)}\ndata: ${JSON.stringify(eventView(event))}\n\n`,
        );
      };
      const inOrder = <T>(items: T[], at: (item: T) => FeedPosition): T[] =>
        [...items].sort((a, b) => byPosition(at(a), at(b)));

      // Catching up: jobs first, then events, each in feed order (as one poll would send them).
      for (const job of inOrder(catchUp.jobs, jobPosition)) sendJob(job);
      for (const event of inOrder(catchUp.events, eventPosition)) sendEvent(event);

      async function poll(): Promise<void> {
        // Jobs first: a job that finished comes before the events it raised.
        const listed = await control.listJobs(jobFilter);
        const next = new Map<string, string>();
        for (const job of inOrder(listed, jobPosition)) {
          const key = jobKey(job);
          next.set(job.jobId, key);
          if (jobs.get(job.jobId) !== key) sendJob(job);
        }
        jobs = next;
        const now = Date.now();
        const events = inOrder(await recentEvents(watermark - LOOKBACK_MS), eventPosition);
        for (const event of events) {
          if (sentEvents.has(event.eventId)) continue;
          sentEvents.set(event.eventId, Date.parse(event.createdAt));
          sendEvent(event);
        }
        watermark = now;
        for (const [id, createdAt] of sentEvents)
          if (createdAt < watermark - 2 * LOOKBACK_MS) sentEvents.delete(id);
      }

      const pollTimer = setInterval(() => {
        if (polling || closed) return;
        polling = true;
        poll()
          .catch((err: unknown) => {
            request.log.warn({ err }, 'live stream poll failed');
          })
          .finally(() => {
            polling = false;
          });
      }, pollMs);
      const keepaliveTimer = setInterval(() => {
        if (!closed) raw.write(': keepalive\n\n');
      }, keepaliveMs);
      const stop = () => {
        if (closed) return;
        closed = true;
        clearInterval(pollTimer);
        clearInterval(keepaliveTimer);
        if (!raw.writableEnded) raw.end();
      };
      request.raw.on('close', stop);
      raw.on('close', stop);
      raw.on('error', stop);
      open.add(stop);
      raw.on('close', () => open.delete(stop));
    },
  });
}
