import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ProfileError, resolveCliSettings } from './profiles.js';

describe('CLI settings precedence: flags > environment > file > default', () => {
  let dir: string;
  let file: string;
  const env = (extra: Record<string, string> = {}) => ({ ION_CLI_CONFIG: file, ...extra });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ion-cli-'));
    file = join(dir, 'config.yaml');
    await writeFile(
      file,
      `current: staging
profiles:
  staging: { apiUrl: 'http://staging.example:7411', token: ion_staging }
  prod: { apiUrl: 'https://prod.example', token: ion_prod }
`,
    );
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('uses the current profile of the file when nothing else is given', () => {
    const s = resolveCliSettings({}, env());
    expect(s).toMatchObject({
      apiUrl: 'http://staging.example:7411',
      apiUrlFrom: 'file',
      token: 'ion_staging',
      tokenFrom: 'file',
      profile: 'staging',
    });
  });

  it('lets ION_PROFILE pick another profile, and --profile beat ION_PROFILE', () => {
    expect(resolveCliSettings({}, env({ ION_PROFILE: 'prod' })).apiUrl).toBe(
      'https://prod.example',
    );
    expect(resolveCliSettings({ profile: 'staging' }, env({ ION_PROFILE: 'prod' })).token).toBe(
      'ion_staging',
    );
  });

  it('lets the environment beat the file, and the flag beat the environment', () => {
    const fromEnv = resolveCliSettings(
      {},
      env({ ION_API_URL: 'http://env.example', ION_TOKEN: 'ion_env' }),
    );
    expect(fromEnv).toMatchObject({
      apiUrl: 'http://env.example',
      apiUrlFrom: 'env',
      token: 'ion_env',
      tokenFrom: 'env',
    });
    const fromFlag = resolveCliSettings(
      { apiUrl: 'http://flag.example' },
      env({ ION_API_URL: 'http://env.example' }),
    );
    expect(fromFlag).toMatchObject({ apiUrl: 'http://flag.example', apiUrlFrom: 'flag' });
  });

  it('falls back to the local default without a file, using ION_PORT', () => {
    const s = resolveCliSettings(
      {},
      { ION_CLI_CONFIG: join(dir, 'absent.yaml'), ION_PORT: '9999' },
    );
    expect(s).toMatchObject({
      apiUrl: 'http://127.0.0.1:9999',
      apiUrlFrom: 'default',
      token: undefined,
    });
  });

  it('refuses a profile the file does not have, and an invalid file, naming the problem', async () => {
    expect(() => resolveCliSettings({ profile: 'nope' }, env())).toThrow(ProfileError);
    expect(() => resolveCliSettings({ profile: 'nope' }, env())).toThrow(/profile "nope"/);
    await writeFile(file, 'profiles:\n  x: { apiUrl: not-a-url }\n');
    expect(() => resolveCliSettings({}, env())).toThrow(/profiles\.x\.apiUrl/);
  });

  it('resolves the CA file flag > ION_CA_FILE > profile, a profile path relative to the file', async () => {
    await writeFile(
      file,
      `current: tls
profiles:
  tls: { apiUrl: 'https://ion.internal', caFile: certs/ca.pem }
  plain: { apiUrl: 'http://ion.internal' }
`,
    );
    expect(resolveCliSettings({}, env())).toMatchObject({
      caFile: join(dir, 'certs', 'ca.pem'),
      caFileFrom: 'file',
    });
    expect(resolveCliSettings({}, env({ ION_CA_FILE: '/env/ca.pem' }))).toMatchObject({
      caFile: '/env/ca.pem',
      caFileFrom: 'env',
    });
    expect(
      resolveCliSettings({ caFile: '/flag/ca.pem' }, env({ ION_CA_FILE: '/env/ca.pem' })),
    ).toMatchObject({ caFile: '/flag/ca.pem', caFileFrom: 'flag' });
    expect(resolveCliSettings({ profile: 'plain' }, env())).toMatchObject({
      caFile: undefined,
      caFileFrom: 'default',
    });
  });
});
