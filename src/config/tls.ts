import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { ValidationError } from '../core/errors.js';
import type { IonConfig } from './config.js';

/** The PEM certificate (chain) and private key the API serves HTTPS with. */
export interface TlsFiles {
  cert: Buffer;
  key: Buffer;
}

function readPem(path: string, field: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'it is a directory'
            : (code ?? 'unreadable');
    throw new ValidationError(`cannot read ${field} ${path}: ${why}`, [
      { path: field, message: why },
    ]);
  }
}

/**
 * Reads `api.tlsCertFile` and `api.tlsKeyFile` when both are set (the config schema allows
 * both or neither) and checks that they form a usable pair, so a wrong file fails at start
 * with a message naming it, never with an OpenSSL stack. Returns undefined for plain HTTP.
 * The key's content never leaves this function but in the returned buffer: it is not logged.
 */
export function readTlsFiles(api: IonConfig['api']): TlsFiles | undefined {
  if (api.tlsCertFile === undefined || api.tlsKeyFile === undefined) return undefined;
  const cert = readPem(api.tlsCertFile, 'api.tlsCertFile');
  const key = readPem(api.tlsKeyFile, 'api.tlsKeyFile');
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    // OpenSSL's reason ("no start line", "key values mismatch"): never the key itself.
    const reason = err instanceof Error ? err.message.replace(/^error:[0-9A-F]+:/i, '') : '';
    throw new ValidationError(
      `api.tlsCertFile ${api.tlsCertFile} and api.tlsKeyFile ${api.tlsKeyFile} are not a usable PEM certificate and private key${reason === '' ? '' : ` (${reason})`}`,
      [{ path: 'api.tlsCertFile', message: 'not a usable certificate and key pair' }],
    );
  }
  return { cert, key };
}
