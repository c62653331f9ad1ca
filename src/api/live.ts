import { Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import type { IonEvent, Job } from '../core/types.js';
import { errorBodySchema } from './errors.js';
import type { ServerDeps } from './server.js';

/**
 * The live stream: `GET /v1/stream` answers Server-Sent Events of job and event changes,
 * optionally only those of one correlation id or one module. It polls the document store (so
 * it sees changes made by workers in other processes) and stops polling when the client goes.
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

const filterString = { type: 'string', minLength: 1, maxLength: 500 } as const;

function eventView(event: IonEvent) {
  return {
    ...event,
    data: Object.fromEntries(event.data.map((kv) => [kv.key, kv.value])),
    metadata: event.data,
  };
}

const jobKey = (job: Job) => `${job.state}:${job.attempts}:${job.updatedAt}`;

export function registerLiveRoutes(
  app: FastifyInstance,
  deps: ServerDeps,
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
    schema: {
      querystring: {
        type: 'object',
        additionalProperties: false,
        properties: { correlationId: filterString, module: filterString },
      },
      response: {
        200: { description: 'text/event-stream: `event: job` and `event: event` messages' },
        400: errorBodySchema,
        500: errorBodySchema,
      },
    },
    handler: async (request, reply) => {
      const { correlationId, module } = request.query as {
        correlationId?: string;
        module?: string;
      };
      const jobFilter = {
        limit: JOB_WINDOW,
        ...(module === undefined ? {} : { module }),
        ...(correlationId === undefined ? {} : { correlationId }),
      };
      // The baseline: what exists now is not news. Fails (and answers in the error format)
      // before any byte of the stream is written if the store is unreachable.
      let jobs = new Map((await control.listJobs(jobFilter)).map((j) => [j.jobId, jobKey(j)]));
      let watermark = Date.now();
      /** Events already sent (or existing at the start) within the look-back window. */
      const sentEvents = new Map<string, number>();
      for (const event of await recentEvents(watermark - LOOKBACK_MS))
        sentEvents.set(event.eventId, Date.parse(event.createdAt));

      reply.hijack();
      const raw = reply.raw;
      raw.writeHead(200, {
        'content-type': 'text/event-stream',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      raw.write(`retry: 2000\n: connected\n\n`);

      // An in-process request (`app.inject()`) has no client that could hang up: it gets the
      // stream's head and ends, rather than waiting forever.
      if (!(request.raw.socket instanceof Socket)) {
        raw.end();
        return;
      }

      let closed = false;
      let polling = false;
      const send = (type: 'job' | 'event', id: string, data: unknown) => {
        if (closed) return;
        raw.write(`event: ${type}\nid: ${id}\ndata: ${JSON.stringify(data)}\n\n`);
      };

      async function recentEvents(since: number): Promise<IonEvent[]> {
        const out: IonEvent[] = [];
        let cursor: string | undefined;
        do {
          const page = await control.listEvents({
            since: new Date(since).toISOString(),
            limit: EVENT_PAGE,
            ...(correlationId === undefined ? {} : { correlationId }),
            ...(module === undefined ? {} : { source: module }),
            ...(cursor === undefined ? {} : { cursor }),
          });
          out.push(...page.events);
          cursor = page.nextCursor ?? undefined;
        } while (cursor !== undefined);
        return out;
      }

      async function poll(): Promise<void> {
        // Jobs first: a job that finished comes before the events it raised.
        const listed = await control.listJobs(jobFilter);
        const next = new Map<string, string>();
        for (const job of [...listed].reverse()) {
          const key = jobKey(job);
          next.set(job.jobId, key);
          if (jobs.get(job.jobId) !== key) send('job', `${job.jobId}@${job.updatedAt}`, job);
        }
        jobs = next;
        const now = Date.now();
        const events = (await recentEvents(watermark - LOOKBACK_MS)).reverse();
        for (const event of events) {
          if (sentEvents.has(event.eventId)) continue;
          sentEvents.set(event.eventId, Date.parse(event.createdAt));
          send('event', event.eventId, eventView(event));
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
