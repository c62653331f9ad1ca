import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ValidationError } from '../core/errors.js';
import { loadConfig, redactConfig } from './config.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ion-config-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function configFile(text: string): Promise<string> {
  const file = join(dir, 'ion-config.yaml');
  await writeFile(file, text);
  return file;
}

function failure(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ValidationError);
    return err as ValidationError;
  }
  throw new Error('expected a ValidationError');
}

describe('loadConfig', () => {
  it('fills every default when nothing is given', () => {
    const config = loadConfig();
    expect(config.dataDir).toBe(resolve('.ion'));
    expect(config.logLevel).toBe('info');
    expect(config.api).toEqual({
      host: '127.0.0.1',
      port: 7411,
      bodyLimitBytes: 1024 * 1024,
      auth: 'off',
      headersTimeoutMs: 30_000,
      requestTimeoutMs: 60_000,
      idleTimeoutMs: 60_000,
      keepAliveTimeoutMs: 5_000,
      uploadMinBytesPerSecond: 1024,
    });
    expect(config.bus).toEqual({ kind: 'sqlite' });
    expect(config.store).toEqual({ kind: 'sqlite' });
    expect(config.blob).toEqual({ kind: 'fs' });
    expect(config.executor).toMatchObject({ kind: 'local', spawnOn: 'process' });
    expect(config.dispatcher).toEqual({
      leaseMs: 30_000,
      retryBaseDelayMs: 1000,
      retryMaxDelayMs: 300_000,
      shutdownGraceMs: 10_000,
      moduleRefreshMs: 1000,
      keepJobDirs: false,
    });
  });

  it('does not read the process environment unless given it', () => {
    const previous = process.env.ION_PORT;
    process.env.ION_PORT = '1234';
    try {
      expect(loadConfig().api.port).toBe(7411);
      expect(loadConfig({ env: process.env }).api.port).toBe(1234);
    } finally {
      if (previous === undefined) delete process.env.ION_PORT;
      else process.env.ION_PORT = previous;
    }
  });

  it('layers file < environment < flags', async () => {
    const file = await configFile(
      'api:\n  port: 1000\n  host: 0.0.0.0\nlogLevel: warn\ndispatcher:\n  leaseMs: 5000\n',
    );
    const fileOnly = loadConfig({ file });
    expect(fileOnly.api.port).toBe(1000);
    expect(fileOnly.api.host).toBe('0.0.0.0');
    expect(fileOnly.logLevel).toBe('warn');

    const withEnv = loadConfig({ file, env: { ION_PORT: '2000', ION_LOG_LEVEL: 'debug' } });
    expect(withEnv.api.port).toBe(2000);
    expect(withEnv.logLevel).toBe('debug');
    expect(withEnv.api.host).toBe('0.0.0.0');
    expect(withEnv.dispatcher.leaseMs).toBe(5000);

    const withFlags = loadConfig({
      file,
      env: { ION_PORT: '2000', ION_LOG_LEVEL: 'debug' },
      flags: { api: { port: 3000 } },
    });
    expect(withFlags.api.port).toBe(3000);
    expect(withFlags.logLevel).toBe('debug');
    expect(withFlags.api.host).toBe('0.0.0.0');
    expect(withFlags.api.bodyLimitBytes).toBe(1024 * 1024);
  });

  it('takes the config file from ION_CONFIG', async () => {
    const file = await configFile('api:\n  port: 4321\n');
    expect(loadConfig({ env: { ION_CONFIG: file } }).api.port).toBe(4321);
  });

  it('reads boolean and integer environment variables', () => {
    const config = loadConfig({
      env: { ION_KEEP_JOB_DIRS: 'true', ION_LEASE_MS: '2500', ION_DATA_DIR: join(dir, 'data') },
    });
    expect(config.dispatcher.keepJobDirs).toBe(true);
    expect(config.dispatcher.leaseMs).toBe(2500);
    expect(config.dataDir).toBe(join(dir, 'data'));
    expect(loadConfig({ env: { ION_KEEP_JOB_DIRS: '0' } }).dispatcher.keepJobDirs).toBe(false);
  });

  it('rejects an unknown key in the config file, naming it', async () => {
    const file = await configFile('api:\n  prot: 8080\n');
    const err = failure(() => loadConfig({ file }));
    expect(err.message).toContain('api.prot');
    expect(err.message).toContain('unknown field');
  });

  it('rejects an unknown top-level flag, naming it', () => {
    const err = failure(() => loadConfig({ flags: { dataDri: '/x' } }));
    expect(err.message).toContain('dataDri: unknown field');
  });

  it('takes the server timeouts from ION_API_*_MS and refuses a negative one, naming it', () => {
    const config = loadConfig({
      env: {
        ION_API_HEADERS_TIMEOUT_MS: '5000',
        ION_API_REQUEST_TIMEOUT_MS: '0',
        ION_API_IDLE_TIMEOUT_MS: '7000',
        ION_API_KEEP_ALIVE_TIMEOUT_MS: '2000',
        ION_API_UPLOAD_MIN_BYTES_PER_SECOND: '0',
      },
    });
    expect(config.api).toMatchObject({
      headersTimeoutMs: 5000,
      requestTimeoutMs: 0,
      idleTimeoutMs: 7000,
      keepAliveTimeoutMs: 2000,
      uploadMinBytesPerSecond: 0,
    });
    expect(
      failure(() => loadConfig({ flags: { api: { requestTimeoutMs: -1 } } })).message,
    ).toContain('api.requestTimeoutMs');
  });

  it('rejects a non-numeric ION_PORT, naming the variable', () => {
    const err = failure(() => loadConfig({ env: { ION_PORT: 'eighty' } }));
    expect(err.message).toContain('ION_PORT');
    expect(err.message).toContain('eighty');
  });

  it('rejects an out-of-range ION_PORT, naming the port setting', () => {
    const err = failure(() => loadConfig({ env: { ION_PORT: '70000' } }));
    expect(err.message).toContain('api.port');
  });

  it('rejects a bad boolean in the environment', () => {
    expect(failure(() => loadConfig({ env: { ION_KEEP_JOB_DIRS: 'yes' } })).message).toContain(
      'ION_KEEP_JOB_DIRS',
    );
  });

  it('rejects a config file that is not a mapping or does not exist, naming the file', async () => {
    const list = await configFile('- a\n- b\n');
    expect(failure(() => loadConfig({ file: list })).message).toContain(list);
    const missing = join(dir, 'nope.yaml');
    expect(failure(() => loadConfig({ file: missing })).message).toContain(missing);
  });

  it('rejects an unknown backend kind', () => {
    expect(failure(() => loadConfig({ flags: { bus: { kind: 'kafka' } } })).message).toContain(
      'bus',
    );
  });

  it('takes the API TLS certificate and key paths from the file, ION_API_TLS_* and flags', async () => {
    const file = await configFile(
      'api:\n  tlsCertFile: /file/cert.pem\n  tlsKeyFile: /file/key.pem\n',
    );
    expect(loadConfig({ file }).api).toMatchObject({
      tlsCertFile: '/file/cert.pem',
      tlsKeyFile: '/file/key.pem',
    });
    const env = { ION_API_TLS_CERT_FILE: '/env/cert.pem', ION_API_TLS_KEY_FILE: '/env/key.pem' };
    expect(loadConfig({ file, env }).api).toMatchObject({
      tlsCertFile: '/env/cert.pem',
      tlsKeyFile: '/env/key.pem',
    });
    expect(
      loadConfig({ file, env, flags: { api: { tlsKeyFile: '/flag/key.pem' } } }).api,
    ).toMatchObject({ tlsCertFile: '/env/cert.pem', tlsKeyFile: '/flag/key.pem' });
    expect(loadConfig().api.tlsCertFile).toBeUndefined();
  });

  it('refuses a TLS certificate without its key, and a key without its certificate, naming the missing field', () => {
    const noKey = failure(() => loadConfig({ env: { ION_API_TLS_CERT_FILE: '/x/cert.pem' } }));
    expect(noKey.message).toContain('api.tlsKeyFile');
    expect(noKey.message).toContain('required when api.tlsCertFile is set');
    expect(noKey.issues.map((i) => i.path)).toEqual(['api.tlsKeyFile']);
    const noCert = failure(() => loadConfig({ flags: { api: { tlsKeyFile: '/x/key.pem' } } }));
    expect(noCert.message).toContain('api.tlsCertFile');
    expect(noCert.message).toContain('required when api.tlsKeyFile is set');
  });

  it('takes where module processes are spawned from ION_EXECUTOR_SPAWN_ON, refusing other values', () => {
    expect(loadConfig({ env: { ION_EXECUTOR_SPAWN_ON: 'thread' } }).executor).toMatchObject({
      kind: 'local',
      spawnOn: 'thread',
    });
    expect(() => loadConfig({ env: { ION_EXECUTOR_SPAWN_ON: 'fork' } })).toThrow(
      /executor\.spawnOn/,
    );
  });

  it('makes dataDir absolute', () => {
    const config = loadConfig({ flags: { dataDir: 'relative/data' } });
    expect(isAbsolute(config.dataDir)).toBe(true);
    expect(config.dataDir).toBe(resolve('relative/data'));
  });

  it('returns a deeply frozen result', () => {
    const config = loadConfig({ flags: { dataDir: dir } });
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.api)).toBe(true);
    expect(Object.isFrozen(config.dispatcher)).toBe(true);
    expect(() => {
      (config.api as { port: number }).port = 1;
    }).toThrow(TypeError);
    expect(config.api.port).toBe(7411);
  });
});

describe('redactConfig', () => {
  it('masks string values under secret-looking keys at any depth, leaving others alone', () => {
    const input = {
      dataDir: '/data',
      api: { port: 1, token: 't0k3n' },
      store: { kind: 'postgres', password: 'hunter2', url: 'postgres://x' },
      s3: { accessKeyId: 'AKIA', secretAccessKey: 'shh', apiKey: 'k' },
      list: [{ clientSecret: 'x', name: 'n' }],
      credentials: 'c',
    };
    const out = redactConfig(input) as typeof input;
    expect(out.dataDir).toBe('/data');
    expect(out.api).toEqual({ port: 1, token: '[redacted]' });
    expect(out.store).toEqual({ kind: 'postgres', password: '[redacted]', url: 'postgres://x' });
    expect(out.s3).toEqual({
      accessKeyId: '[redacted]',
      secretAccessKey: '[redacted]',
      apiKey: '[redacted]',
    });
    expect(out.list).toEqual([{ clientSecret: '[redacted]', name: 'n' }]);
    expect(out.credentials).toBe('[redacted]');
  });

  it('does not change the config it is given', () => {
    const input = { store: { password: 'hunter2' } };
    redactConfig(input);
    expect(input.store.password).toBe('hunter2');
  });

  it('masks a secret that YAML parsed as a number', () => {
    const out = redactConfig({ store: { password: 123456 } }) as { store: { password: unknown } };
    expect(out.store.password).toBe('[redacted]');
  });

  it('prints the TLS key file path, which is no secret, but still masks a key value', () => {
    const out = redactConfig({
      api: { tlsCertFile: '/etc/ion/cert.pem', tlsKeyFile: '/etc/ion/key.pem', apiKey: 'k' },
    });
    expect(out).toEqual({
      api: {
        tlsCertFile: '/etc/ion/cert.pem',
        tlsKeyFile: '/etc/ion/key.pem',
        apiKey: '[redacted]',
      },
    });
  });

  it('redacts a loaded config without losing its non-secret values', () => {
    const config = loadConfig({ flags: { dataDir: dir } });
    expect(redactConfig(config)).toEqual(JSON.parse(JSON.stringify(config)));
  });
});
