import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanup, cli, tempDir } from './harness.js';

// The real CLI process: the config file is read (the original Ion's CLI ignored its own),
// and flags > environment > file.
describe('ion config show through the real CLI', () => {
  let dir: string;
  let file: string;

  beforeAll(async () => {
    dir = await tempDir();
    file = join(dir, 'config.yaml');
    await writeFile(
      file,
      "current: a\nprofiles:\n  a: { apiUrl: 'http://file.example', token: ion_secret_value }\n",
    );
  });

  afterAll(async () => {
    await cleanup(dir);
  });

  const show = async (args: string[], env: Record<string, string>) => {
    const r = await cli(['config', 'show', '--json', ...args], {
      env: { ION_API_URL: '', ION_TOKEN: '', ION_PROFILE: '', ION_CLI_CONFIG: file, ...env },
    });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toContain('ion_secret_value');
    return JSON.parse(r.stdout) as {
      apiUrl: string;
      apiUrlFrom: string;
      token: string | null;
      tokenFrom: string;
    };
  };

  it('reads the profile from the file, then lets the environment and the flag override it', async () => {
    expect(await show([], {})).toMatchObject({
      apiUrl: 'http://file.example',
      apiUrlFrom: 'file',
      token: '[set]',
      tokenFrom: 'file',
    });
    expect(await show([], { ION_API_URL: 'http://env.example' })).toMatchObject({
      apiUrl: 'http://env.example',
      apiUrlFrom: 'env',
    });
    expect(
      await show(['--api-url', 'http://flag.example'], { ION_API_URL: 'http://env.example' }),
    ).toMatchObject({ apiUrl: 'http://flag.example', apiUrlFrom: 'flag' });
  });

  it('exits 2 for a profile that does not exist', async () => {
    const r = await cli(['config', 'show', '--profile', 'missing'], {
      env: { ION_CLI_CONFIG: file },
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('profile "missing"');
  });
});
