import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import { scopeAllows, type Scope, type TokenService, type TokenView } from '../core/tokens.js';
import { errorBodySchema } from './errors.js';

/**
 * API authentication: bearer tokens with scopes, checked in one `onRequest` hook before any
 * route runs. Which scope a route needs is decided here, in one table, so a route added later
 * gets a sensible default without touching this file: GET (and HEAD) needs `read`, anything
 * else `admin`. A route may also say it itself with `config: { scope: 'publish' }` (or
 * `'open'`). Token values are never logged or echoed: the logger redacts the Authorization
 * header, and refusals name no token.
 */

export interface AuthDeps {
  /** `on`: every route but the open ones needs a token. */
  mode: 'on' | 'off';
  tokens: TokenService;
}

/** What a route needs: no token at all (`open`), or a token carrying this scope. */
export type RouteScope = Scope | 'open';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The scope this route needs, overriding the central table in src/api/auth.ts. */
    scope?: RouteScope;
  }
  interface FastifyRequest {
    /** The token that authenticated this request; null when auth is off or the route is open. */
    ionToken: TokenView | null;
  }
}

/** Routes anyone may call: health checks and the API reference. */
const OPEN: readonly RegExp[] = [
  /^\/healthz$/,
  /^\/readyz$/,
  /^\/metrics$/,
  /^\/openapi\.json$/,
  /^\/docs(\/.*)?$/,
];

/** Routes that feed Ion: a `publish` token may call them whatever their method. */
const PUBLISH: readonly { method: string | null; url: RegExp }[] = [
  { method: 'POST', url: /^\/v1\/events$/ },
  { method: 'PUT', url: /^\/v1\/blobs$/ },
  { method: null, url: /^\/v1\/gateway(\/.*)?$/ },
];

/** Routes only `admin` may call, reads included: token management. */
const ADMIN: readonly RegExp[] = [/^\/v1\/tokens(\/.*)?$/];

/**
 * The scope a route needs, from its method and URL pattern (`/v1/jobs/:jobId`, not the
 * request's path). `null` when the request matched no route: any valid token may then learn
 * that it does not exist, so an anonymous caller cannot map the API by probing.
 */
export function requiredScope(
  method: string,
  urlPattern: string | undefined,
  declared?: RouteScope,
): RouteScope | null {
  if (declared !== undefined) return declared;
  if (urlPattern === undefined) return null;
  const path = urlPattern.split('?')[0]!;
  if (OPEN.some((re) => re.test(path))) return 'open';
  if (ADMIN.some((re) => re.test(path))) return 'admin';
  if (PUBLISH.some((r) => (r.method === null || r.method === method) && r.url.test(path)))
    return 'publish';
  if (method === 'GET' || method === 'HEAD') return 'read';
  return 'admin';
}

function refuse(reply: FastifyReply, status: 401 | 403, message: string): FastifyReply {
  if (status === 401) void reply.header('www-authenticate', 'Bearer realm="ion"');
  return reply
    .status(status)
    .send({ error: { code: status === 401 ? 'unauthorized' : 'forbidden', message } });
}

/** The bearer token of a request, or null when the header is absent or not a bearer token. */
function bearer(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  if (typeof header !== 'string') return null;
  const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return match === null ? null : match[1]!;
}

const refusals = { 401: errorBodySchema, 403: errorBodySchema };

/**
 * Installs authentication (when `auth.mode` is `on`); the token routes are in routes/tokens.ts.
 * Called once in `buildServer`, before any route, so the hook and the refusal schemas cover
 * every route.
 */
export function installAuth(app: FastifyInstance, auth: AuthDeps | undefined): void {
  app.decorateRequest('ionToken', null);
  if (auth === undefined) return;
  const { tokens } = auth;

  if (auth.mode === 'on') {
    // Document the refusals on every route that documents its responses (OpenAPI).
    app.addHook('onRoute', (route: RouteOptions) => {
      const schema = route.schema;
      if (schema?.response === undefined || typeof schema.response !== 'object') return;
      const scope = requiredScope(
        Array.isArray(route.method) ? String(route.method[0]) : String(route.method),
        route.url,
        route.config?.scope,
      );
      if (scope === 'open') return;
      schema.response = { ...refusals, ...(schema.response as object) };
    });

    app.addHook('onRequest', async (request, reply) => {
      const scope = requiredScope(
        request.method,
        request.routeOptions.url,
        request.routeOptions.config.scope,
      );
      if (scope === 'open') return;
      const value = bearer(request);
      if (value === null)
        return refuse(reply, 401, 'this API needs a token: send Authorization: Bearer <token>');
      const token = await tokens.authenticate(value);
      if (token === null) return refuse(reply, 401, 'the token is invalid or revoked');
      if (scope !== null && !scopeAllows(token.scopes, scope))
        return refuse(
          reply,
          403,
          `${request.method} ${request.routeOptions.url ?? request.url} needs a token with scope "${scope}" (this token has ${token.scopes.join(', ')})`,
        );
      request.ionToken = token;
    });
  }
}
