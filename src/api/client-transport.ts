import { rootCertificates } from 'node:tls';
import type { Dispatcher, fetch as undiciFetch } from 'undici';

type UndiciFetch = typeof undiciFetch;
type UndiciInput = Parameters<UndiciFetch>[0];
type UndiciInit = NonNullable<Parameters<UndiciFetch>[1]>;

/** The fetch IonClient sends its requests with. */
export type Transport = typeof fetch;

/**
 * A fetch that also trusts the PEM certificate authorities in `ca` (a private CA, or a
 * self-signed API certificate), besides the system roots.
 *
 * Node 20's global fetch takes no CA, and an `undici` Agent handed to it as `dispatcher`
 * breaks whenever the npm undici and the one bundled in Node differ in major version (the
 * dispatch-handler protocol changed). So this uses undici's own fetch with its own Agent: one
 * self-contained HTTP stack, loaded only when a CA is given.
 */
export function fetchTrusting(ca: string | Buffer): Transport {
  let stack: Promise<{ fetch: UndiciFetch; agent: Dispatcher }> | undefined;
  return async (input, init) => {
    stack ??= import('undici').then((undici) => ({
      fetch: undici.fetch,
      agent: new undici.Agent({ connect: { ca: [...rootCertificates, ca.toString()] } }),
    }));
    const { fetch, agent } = await stack;
    // The global and undici's request types differ only nominally: the client passes a
    // string URL, plain headers and a string or web-stream body.
    return fetch(input as UndiciInput, { ...(init as UndiciInit), dispatcher: agent });
  };
}

/** TLS verification failures (OpenSSL's codes and Node's host-name check). */
const CERT_ERROR = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/;

/**
 * The one-line message for a request that got no HTTP answer, saying what to do about it:
 * trust the certificate, fix the URL's scheme, or start Ion.
 */
export function unreachableMessage(baseUrl: string, err: unknown): string {
  const cause = err instanceof Error && err.cause instanceof Error ? err.cause : undefined;
  const reason = cause?.message ?? (err instanceof Error ? err.message : String(err));
  const code = (cause as { code?: unknown } | undefined)?.code;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return `the TLS certificate of Ion at ${baseUrl} is not for that host name (${reason}); use a URL with a name or address the certificate lists`;
  }
  if (typeof code === 'string' && CERT_ERROR.test(code)) {
    return `cannot verify the TLS certificate of Ion at ${baseUrl} (${reason}); if it uses a private CA or a self-signed certificate, trust that CA with --ca-file, ION_CA_FILE or the CLI profile's caFile`;
  }
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG') {
    return `cannot reach Ion at ${baseUrl} (${reason}): it does not speak TLS there; use an http:// URL`;
  }
  // A TLS listener drops a plain-HTTP request without an answer.
  const closed =
    baseUrl.startsWith('http://') && (code === 'UND_ERR_SOCKET' || code === 'ECONNRESET');
  return closed
    ? `cannot reach Ion at ${baseUrl} (${reason}); if it serves HTTPS, use an https:// URL`
    : `cannot reach Ion at ${baseUrl} (${reason}); is it running? (start it with "ion up")`;
}
