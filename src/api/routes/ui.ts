import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, FastifyReply } from 'fastify';

/**
 * Serves the built web dashboard (`vite build` → `dist/web`) at `/ui`, same origin as the API.
 * The files hold no data (the page fetches it with the user's token), so the routes are open.
 * Every answer carries a Content-Security-Policy: scripts only from this origin, no inline
 * script, no framing; styles may be inline because the graph library positions nodes with
 * style attributes. Paths are resolved inside the folder only: `..`, encoded escapes and
 * symlinks out of it answer 404. A path with no file extension is a page of the app and
 * gets `index.html` (the app routes in the browser).
 */

/** Where `npm install` (the `prepare` script) builds the dashboard: `<package>/dist/web`. */
export const DEFAULT_UI_DIR = fileURLToPath(new URL('../../../dist/web', import.meta.url));

export const UI_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob:",
  "connect-src 'self'",
  "worker-src 'self' blob:",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.map': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
};

const NOT_BUILT = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Ion dashboard not built</title></head>
<body><h1>The Ion dashboard has not been built</h1>
<p>Run <code>npm install</code> (it builds the dashboard) or <code>npm run build:web</code> in the Ion folder, then reload.</p></body></html>`;

function secure(reply: FastifyReply): FastifyReply {
  return reply
    .header('content-security-policy', UI_CSP)
    .header('x-content-type-options', 'nosniff')
    .header('referrer-policy', 'no-referrer')
    .header('x-frame-options', 'DENY');
}

async function resolveInside(root: string, rel: string): Promise<string | null> {
  let decoded: string;
  try {
    decoded = decodeURIComponent(rel);
  } catch {
    return null;
  }
  if (decoded.includes('\0') || decoded.split(/[\\/]/).some((part) => part === '..')) return null;
  const full = resolve(root, `.${sep}${decoded}`);
  if (full !== root && !full.startsWith(root + sep)) return null;
  try {
    const real = await realpath(full);
    const realRoot = await realpath(root);
    if (real !== realRoot && !real.startsWith(realRoot + sep)) return null;
    return (await stat(real)).isFile() ? real : null;
  } catch {
    return null;
  }
}

export function registerUiRoutes(app: FastifyInstance, uiDir: string = DEFAULT_UI_DIR): void {
  const root = resolve(uiDir);
  const index = join(root, 'index.html');

  const sendIndex = async (reply: FastifyReply) => {
    secure(reply).header('cache-control', 'no-cache');
    if ((await resolveInside(root, 'index.html')) === null)
      return reply.status(503).type('text/html; charset=utf-8').send(NOT_BUILT);
    return reply.type(TYPES['.html']!).send(createReadStream(index));
  };

  app.get('/ui', { config: { scope: 'open' }, schema: { hide: true } }, (_request, reply) =>
    sendIndex(reply),
  );
  app.get(
    '/ui/*',
    { config: { scope: 'open' }, schema: { hide: true } },
    async (request, reply) => {
      const rel = (request.params as { '*': string })['*'];
      const ext = extname(rel.split('?')[0]!).toLowerCase();
      if (ext === '') return sendIndex(reply);
      const file = await resolveInside(root, rel);
      if (file === null) {
        return secure(reply)
          .status(404)
          .send({ error: { code: 'not_found', message: `no dashboard file ${rel}` } });
      }
      secure(reply)
        .type(TYPES[ext] ?? 'application/octet-stream')
        // Vite names built assets by content hash: they never change under one name.
        .header(
          'cache-control',
          rel.startsWith('assets/') ? 'public, max-age=31536000, immutable' : 'no-cache',
        );
      return reply.send(createReadStream(file));
    },
  );
}
