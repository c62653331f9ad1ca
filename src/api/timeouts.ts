import type { Socket } from 'node:net';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/**
 * How long the API waits for slow clients. Two kinds of limit, because a multi-GB upload
 * and a client that trickles bytes look alike to a whole-request deadline:
 *
 * - deadlines, for what must arrive in bounded time whatever its size: the headers
 *   (`headersTimeoutMs`, Node's `headersTimeout`) and every request except streamed uploads
 *   (`requestTimeoutMs`, applied here per request; Node's own `requestTimeout` is one
 *   deadline for every request, which would cut a long upload, so it stays 0);
 * - progress, for what may take as long as it keeps moving: a connection on which nothing
 *   moves for `idleTimeoutMs` is closed, and a streamed upload must average at least
 *   `uploadMinBytesPerSecond` over each `idleTimeoutMs`.
 *
 * Names and defaults are those of the `api` section of the config (docs/configuration.md).
 */
export interface ServerTimeouts {
  headersTimeoutMs: number;
  /** 0: no whole-request deadline. */
  requestTimeoutMs: number;
  idleTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /** 0: no minimum rate for streamed uploads. */
  uploadMinBytesPerSecond: number;
}

/** The defaults, the same as the config schema's (a test checks they agree). */
export const DEFAULT_SERVER_TIMEOUTS: ServerTimeouts = {
  headersTimeoutMs: 30_000,
  requestTimeoutMs: 60_000,
  idleTimeoutMs: 60_000,
  keepAliveTimeoutMs: 5_000,
  uploadMinBytesPerSecond: 1024,
};

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * The body streams to the blob store and may be large: held to the minimum upload rate
     * instead of the whole-request deadline.
     */
    streamedUpload?: boolean;
    /**
     * The response streams on purpose for as long as it likes (live stream, followed log):
     * the connection's idle timeout does not apply once the request has arrived.
     */
    longLivedResponse?: boolean;
  }
}

/** The Fastify options that carry the Node server's own timeouts. */
export function fastifyTimeoutOptions(t: ServerTimeouts) {
  return {
    connectionTimeout: t.idleTimeoutMs,
    keepAliveTimeout: t.keepAliveTimeoutMs,
    // Whole-request deadlines are applied per request by `installTimeouts`.
    requestTimeout: 0,
  };
}

/** The answer to a client that was too slow, in the one error format; then the connection goes. */
function cutOff(request: FastifyRequest, reply: FastifyReply, message: string): void {
  request.log.info({ url: request.url, method: request.method }, message);
  const raw = reply.raw;
  if (!raw.headersSent && raw.writable) {
    const body = JSON.stringify({ error: { code: 'timeout', message } });
    raw.writeHead(408, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
      connection: 'close',
    });
    raw.end(body, () => request.raw.socket?.destroy());
  } else {
    request.raw.socket?.destroy();
  }
}

/**
 * Installs the deadlines and progress checks of {@link ServerTimeouts} on a server built
 * but not yet listening. Each request gets one timer, cleared when its response ends.
 */
export function installTimeouts(app: FastifyInstance, t: ServerTimeouts): void {
  const timers = new WeakMap<FastifyRequest, NodeJS.Timeout>();
  const server = app.server;
  server.headersTimeout = t.headersTimeoutMs;
  // Node looks for expired headers on this interval (30 s by default): check often enough
  // that a short headers timeout is kept to within about a tenth of itself.
  (server as { connectionsCheckingInterval?: number }).connectionsCheckingInterval = Math.min(
    30_000,
    Math.max(100, Math.floor(t.headersTimeoutMs / 10)),
  );

  app.addHook('onRequest', (request, reply, done) => {
    const config = request.routeOptions.config;
    const socket: Socket = request.raw.socket;
    let timer: NodeJS.Timeout | undefined;
    if (config.streamedUpload === true) {
      const windowMs = t.idleTimeoutMs;
      const minBytes = Math.ceil((t.uploadMinBytesPerSecond * windowMs) / 1000);
      if (minBytes > 0) {
        let readAtWindowStart = socket.bytesRead;
        timer = setInterval(() => {
          if (request.raw.complete) return clearInterval(timer);
          const moved = socket.bytesRead - readAtWindowStart;
          readAtWindowStart = socket.bytesRead;
          if (moved < minBytes)
            cutOff(
              request,
              reply,
              `the upload is too slow: ${moved} bytes in the last ${windowMs}ms, the least accepted is ${minBytes} (api.uploadMinBytesPerSecond ${t.uploadMinBytesPerSecond})`,
            );
        }, windowMs);
      }
    } else if (t.requestTimeoutMs > 0) {
      timer = setTimeout(() => {
        if (!request.raw.complete)
          cutOff(
            request,
            reply,
            `the request did not arrive within ${t.requestTimeoutMs}ms (api.requestTimeoutMs)`,
          );
      }, t.requestTimeoutMs);
    }
    if (timer !== undefined) {
      timer.unref();
      timers.set(request, timer);
      reply.raw.once('close', () => clearTimeout(timer));
    }
    // Injected requests (tests) have a stand-in socket without timeouts.
    if (config.longLivedResponse === true && typeof socket.setTimeout === 'function')
      socket.setTimeout(0);
    done();
  });
  app.addHook('onResponse', (request, _reply, done) => {
    clearTimeout(timers.get(request));
    // A long-lived response's connection gets its idle timeout back if it is kept alive.
    const socket = request.raw.socket as Socket | undefined;
    if (
      request.routeOptions.config.longLivedResponse === true &&
      typeof socket?.setTimeout === 'function'
    )
      socket.setTimeout(t.idleTimeoutMs);
    done();
  });
}

/**
 * Answers errors Node raises before a request reaches Fastify. A headers timeout gets the
 * one error format with what was too slow; the rest are answered as Fastify does by default.
 */
export function clientErrorHandler(t: ServerTimeouts) {
  return (err: NodeJS.ErrnoException, socket: Socket): void => {
    if (err.code === 'ECONNRESET' || socket.destroyed) return;
    let status: number;
    let body: string;
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
      status = 408;
      body = JSON.stringify({
        error: {
          code: 'timeout',
          message: `the request headers did not arrive within ${t.headersTimeoutMs}ms (api.headersTimeoutMs)`,
        },
      });
    } else if (err.code === 'HPE_HEADER_OVERFLOW') {
      status = 431;
      body = `{"error":"Request Header Fields Too Large","message":"Exceeded maximum allowed HTTP header size","statusCode":431}`;
    } else {
      status = 400;
      body = `{"error":"Bad Request","message":"Client Error","statusCode":400}`;
    }
    if (socket.writable) {
      const reason = STATUS_TEXT[status];
      socket.write(
        `HTTP/1.1 ${status} ${reason}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n${body}`,
      );
    }
    socket.destroy(err);
  };
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
};
