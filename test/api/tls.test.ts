import { execFileSync, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IonClient } from '../../src/api/client.js';
import { IonApp } from '../../src/app/ion-app.js';
import { createLogger } from '../../src/app/logger.js';
import { loadConfig } from '../../src/config/config.js';
import { readTlsFiles } from '../../src/config/tls.js';
import { UnavailableError, ValidationError } from '../../src/core/errors.js';
import { cli, ROOT } from '../e2e/harness.js';
import { StopWaiting, waitFor } from '../support/wait.js';

/** No stack trace: no "    at fn (file:1:2)" frames. */
const STACK = /\n\s+at\s|\bat [^\s]+ \(.*:\d+:\d+\)/;

/** A throwaway self-signed certificate for 127.0.0.1, made by openssl in `dir`. */
function selfSigned(dir: string): { cert: string; key: string } {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  try {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '2',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        key,
        '-out',
        cert,
      ],
      { stdio: 'pipe' },
    );
  } catch (err) {
    throw new Error(`these tests need openssl on PATH to make a certificate: ${String(err)}`);
  }
  return { cert, key };
}

function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected the request to fail');
    },
    (err: unknown) => err,
  );
}

describe('the API over TLS', () => {
  let dir: string;
  let cert: string;
  let key: string;
  let app: IonApp;
  let url: string;
  /** Clean CLI environment: no profile file, no token, no inherited CA setting. */
  const cliEnv = {
    ION_TOKEN: '',
    ION_PROFILE: '',
    ION_CA_FILE: '',
    ION_CLI_CONFIG: '/nonexistent/ion.yaml',
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ion-tls-'));
    ({ cert, key } = selfSigned(dir));
    const config = loadConfig({
      flags: {
        dataDir: join(dir, 'data'),
        api: { port: 0, host: '127.0.0.1', tlsCertFile: cert, tlsKeyFile: key },
      },
    });
    app = await IonApp.create(
      config,
      createLogger('silent'),
      { api: true, relay: false, workers: false },
      {},
    );
    url = (await app.start())!;
  });

  afterAll(async () => {
    await app?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('listens on https and says so in the URL it returns', () => {
    expect(url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  });

  it('answers /healthz over https to a client that trusts its certificate', async () => {
    const client = new IonClient(url, undefined, { ca: await readFile(cert) });
    expect(await client.health()).toEqual({ status: 'ok' });
  });

  it('streams a blob up and down through the CA-trusting client', async () => {
    const client = new IonClient(url, undefined, { ca: await readFile(cert, 'utf8') });
    const file = join(dir, 'payload.bin');
    const payload = Buffer.alloc(256 * 1024, 7);
    await writeFile(file, payload);
    const ref = await client.uploadFile(file);
    expect(ref.size).toBe(payload.length);
    const chunks: Buffer[] = [];
    for await (const chunk of await client.downloadBlob(ref.sha256)) chunks.push(chunk as Buffer);
    expect(Buffer.concat(chunks).equals(payload)).toBe(true);
  });

  it('fails with a clear message, not a stack, when the client does not trust the certificate', async () => {
    const err = await rejection(new IonClient(url).health());
    expect(err).toBeInstanceOf(UnavailableError);
    const message = (err as Error).message;
    expect(message).toContain(`cannot verify the TLS certificate of Ion at ${url}`);
    expect(message).toMatch(/self[- ]signed/);
    expect(message).toContain('ION_CA_FILE');
    expect(message).not.toMatch(STACK);
  });

  it('does not trust a different CA', async () => {
    const other = await mkdtemp(join(tmpdir(), 'ion-tls-other-'));
    try {
      const { cert: otherCert } = selfSigned(other);
      const client = new IonClient(url, undefined, { ca: await readFile(otherCert) });
      const err = await rejection(client.health());
      expect(err).toBeInstanceOf(UnavailableError);
      expect((err as Error).message).toContain('cannot verify the TLS certificate');
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it('gives plain http to the TLS port no answer, and the client says to use https', async () => {
    const plainUrl = url.replace(/^https:/, 'http:');
    // A raw request: the TLS listener never answers it with HTTP.
    const raw = await new Promise<string>((resolve) => {
      const req = httpRequest(`${plainUrl}/healthz`, (res) => resolve(`status ${res.statusCode}`));
      req.once('error', (e: NodeJS.ErrnoException) => resolve(`error ${e.code ?? e.message}`));
      req.end();
    });
    expect(raw).toMatch(/^error /);
    const err = await rejection(new IonClient(plainUrl).health());
    expect(err).toBeInstanceOf(UnavailableError);
    expect((err as Error).message).toContain(`cannot reach Ion at ${plainUrl}`);
    expect((err as Error).message).toContain('use an https:// URL');
  });

  it('lets the CLI trust the certificate through ION_CA_FILE, and explains when it does not', async () => {
    const trusted = await cli(['module', 'ls', '--json'], {
      apiUrl: url,
      env: { ...cliEnv, ION_CA_FILE: cert },
    });
    expect(trusted.code, trusted.stderr).toBe(0);
    expect(JSON.parse(trusted.stdout)).toEqual({ modules: [] });

    const untrusted = await cli(['module', 'ls'], { apiUrl: url, env: cliEnv });
    expect(untrusted.code).toBe(1);
    expect(untrusted.stderr).toContain('cannot verify the TLS certificate');
    expect(untrusted.stderr).not.toMatch(STACK);

    const missing = join(dir, 'no-such-ca.pem');
    const bad = await cli(['module', 'ls'], {
      apiUrl: url,
      env: { ...cliEnv, ION_CA_FILE: missing },
    });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`cannot read the CA file ${missing} (from ION_CA_FILE)`);
    expect(bad.stderr).not.toMatch(STACK);
  });
});

describe('TLS configuration errors', () => {
  let dir: string;
  let cert: string;
  let key: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ion-tls-config-'));
    ({ cert, key } = selfSigned(dir));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a certificate without a key, naming the missing field', async () => {
    expect(() => loadConfig({ flags: { api: { tlsCertFile: cert } } })).toThrow(
      /api\.tlsKeyFile: required when api\.tlsCertFile is set/,
    );
    const run = await cli(['server', '--data-dir', join(dir, 'd1'), '--tls-key-file', key]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('api.tlsCertFile: required when api.tlsKeyFile is set');
    expect(run.stderr).not.toMatch(STACK);
  });

  it('names a missing certificate file at start, without a stack', async () => {
    const missing = join(dir, 'missing-cert.pem');
    const config = loadConfig({
      flags: { dataDir: join(dir, 'd2'), api: { port: 0, tlsCertFile: missing, tlsKeyFile: key } },
    });
    const err = await rejection(
      IonApp.create(
        config,
        createLogger('silent'),
        { api: true, relay: false, workers: false },
        {},
      ),
    );
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as Error).message).toBe(`cannot read api.tlsCertFile ${missing}: no such file`);

    const run = await cli(['server', '--data-dir', join(dir, 'd3'), '--port', '0'], {
      env: { ION_API_TLS_CERT_FILE: missing, ION_API_TLS_KEY_FILE: key },
    });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`error: cannot read api.tlsCertFile ${missing}: no such file`);
    expect(run.stderr).not.toMatch(STACK);
  });

  it('refuses files that are not a matching PEM pair, naming them and never printing the key', async () => {
    const garbage = join(dir, 'garbage.pem');
    await writeFile(garbage, 'not a certificate\n');
    expect(() =>
      readTlsFiles({ ...loadConfig().api, tlsCertFile: garbage, tlsKeyFile: key }),
    ).toThrow(
      new RegExp(`api\\.tlsCertFile ${garbage} and api\\.tlsKeyFile ${key} are not a usable`),
    );
    const other = await mkdtemp(join(tmpdir(), 'ion-tls-other-'));
    try {
      const { key: otherKey } = selfSigned(other);
      let message = '';
      try {
        readTlsFiles({ ...loadConfig().api, tlsCertFile: cert, tlsKeyFile: otherKey });
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message).toContain('are not a usable PEM certificate and private key');
      const keyText = await readFile(otherKey, 'utf8');
      expect(message).not.toContain(keyText.split('\n')[1]!);
    } finally {
      await rm(other, { recursive: true, force: true });
    }
  });

  it('prints an https:// URL when `ion up` starts with TLS flags', async () => {
    const proc = spawn(
      process.execPath,
      [
        join(ROOT, 'bin/ion.js'),
        'up',
        '--data-dir',
        join(dir, 'up'),
        '--port',
        '0',
        '--tls-cert-file',
        cert,
        '--tls-key-file',
        key,
      ],
      { cwd: ROOT, env: { ...process.env, ION_CA_FILE: '' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    const collect = (c: Buffer): void => {
      out += c.toString();
    };
    proc.stdout.on('data', collect);
    proc.stderr.on('data', collect);
    try {
      const printed = await waitFor('ion up to print its URL', () => {
        if (proc.exitCode !== null) throw new StopWaiting(`ion up exited: ${out}`);
        return /Ion is up at (\S+)/.exec(out)?.[1];
      });
      expect(printed).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const client = new IonClient(printed, undefined, { ca: await readFile(cert) });
      expect(await client.health()).toEqual({ status: 'ok' });
    } finally {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((resolve) => proc.once('exit', resolve));
        proc.kill('SIGTERM');
        await exited;
      }
    }
  });
});
