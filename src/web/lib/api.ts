/**
 * The dashboard's HTTP client: same origin as the API, the token (when auth is on) sent as a
 * bearer header from session storage, never in a URL. Errors carry the API's message and code.
 */

const TOKEN_KEY = 'ion.token';

export function getToken(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

export function setToken(token: string | null): void {
  if (token === null) sessionStorage.removeItem(TOKEN_KEY);
  else sessionStorage.setItem(TOKEN_KEY, token);
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function authHeaders(extra: Record<string, string> = {}): Record<string, string> {
  const token = getToken();
  return token === null ? extra : { ...extra, authorization: `Bearer ${token}` };
}

/** Listeners told when the API refuses the token, so the app can ask for one. */
const unauthorized = new Set<() => void>();
export function onUnauthorized(fn: () => void): () => void {
  unauthorized.add(fn);
  return () => unauthorized.delete(fn);
}

export async function raw(path: string, init: RequestInit = {}): Promise<Response> {
  const res = await fetch(path, {
    ...init,
    headers: authHeaders((init.headers as Record<string, string> | undefined) ?? {}),
  });
  if (!res.ok) {
    let code = 'http_error';
    let message = `${res.status} ${res.statusText}`;
    try {
      const body = (await res.json()) as { error?: { code?: string; message?: string } };
      code = body.error?.code ?? code;
      message = body.error?.message ?? message;
    } catch {
      // not the JSON error format: keep the status line
    }
    if (res.status === 401) for (const fn of unauthorized) fn();
    throw new ApiError(res.status, code, message);
  }
  return res;
}

export async function api<T>(
  path: string,
  init: RequestInit & { json?: unknown } = {},
): Promise<T> {
  const { json, ...rest } = init;
  const res = await raw(
    path,
    json === undefined
      ? rest
      : {
          ...rest,
          method: rest.method ?? 'POST',
          body: JSON.stringify(json),
          headers: { 'content-type': 'application/json' },
        },
  );
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

/** Builds a query string from the defined, non-empty values. */
export function qs(params: Record<string, string | number | undefined | null>): string {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') search.set(k, String(v));
  }
  const s = search.toString();
  return s === '' ? '' : `?${s}`;
}

// The API's shapes, as the dashboard reads them.
// The domain's types, as the API sends them (type-only: nothing of the server is bundled).
export type { Attempt, FileRef, Insight, Job, JobState, KeyValue } from '../../core/types.js';
export { JOB_STATES } from '../../core/types.js';
import type { FileRef, Insight, Job, KeyValue } from '../../core/types.js';

/** An event as the API shows it: its metadata as the ordered list the module wrote. */
export interface IonEvent {
  eventId: string;
  type: string;
  correlationId: string;
  parentEventId: string | null;
  source: string;
  sourceJobId: string | null;
  metadata: KeyValue[];
  files: FileRef[];
  createdAt: string;
}
export interface ModuleRecord {
  name: string;
  version: number;
  paused: boolean;
  subscribes: string[];
  publishes: string[];
  createdAt: string;
  updatedAt: string;
  [field: string]: unknown;
}
export interface Trace {
  correlationId: string;
  events: IonEvent[];
  jobs: Job[];
  insights: Insight[];
}

/** A blob's download address (the API answers with the file's name and type). */
export function blobHref(file: { sha256: string; path: string }): string {
  const name = file.path.split('/').pop() ?? file.path;
  return `/v1/blobs/${encodeURIComponent(file.sha256)}${qs({ name })}`;
}

/**
 * Downloads a blob with the token in a header (a plain link could not carry it), then hands
 * the bytes to the browser as a file.
 */
export async function download(file: { sha256: string; path: string }): Promise<void> {
  const res = await raw(blobHref(file));
  const url = URL.createObjectURL(await res.blob());
  const a = document.createElement('a');
  a.href = url;
  a.download = file.path.split('/').pop() ?? 'file';
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
