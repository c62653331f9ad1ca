import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IonClient } from '../../src/api/client.js';
import { publishWithFiles } from '../../src/cli/commands/event.js';
import { ROOT, cli } from '../e2e/harness.js';
import { startApiApp, type ApiApp } from '../support/api-app.js';

// Upload progress against a real API listening on loopback (fetch streams the body over TCP).
describe('upload progress', () => {
  let api: ApiApp;
  let client: IonClient;
  let url: string;
  const env = { ION_TOKEN: '', ION_PROFILE: '', ION_CLI_CONFIG: '/nonexistent/ion.yaml' };
  const SIZE = 3 * 1024 * 1024 + 17;

  beforeAll(async () => {
    api = await startApiApp('ion-upload-progress-', 1024 * 1024);
    const { port } = api.app.server!.server.address() as AddressInfo;
    url = `http://127.0.0.1:${port}`;
    client = new IonClient(url);
  });

  afterAll(async () => {
    await api.stop();
  });

  it('uploadFile reports the bytes read, chunk by chunk, up to the file size', async () => {
    const path = join(api.dir, 'big.bin');
    await writeFile(path, randomBytes(SIZE));
    const calls: [number, number][] = [];
    const ref = await client.uploadFile(path, {
      onProgress: (sent, total) => calls.push([sent, total]),
    });
    expect(ref.size).toBe(SIZE);
    // Several chunks, each call with the total, the count only ever growing, ending at the size.
    expect(calls.length).toBeGreaterThan(2);
    expect(calls.every(([, total]) => total === SIZE)).toBe(true);
    for (let i = 1; i < calls.length; i++) expect(calls[i]![0]).toBeGreaterThan(calls[i - 1]![0]);
    expect(calls.at(-1)).toEqual([SIZE, SIZE]);
  });

  it('uploadFile without a callback still uploads (and reads no size)', async () => {
    const path = join(api.dir, 'small.txt');
    await writeFile(path, 'hello');
    expect(await client.uploadFile(path)).toMatchObject({ size: 5 });
  });

  it('publishWithFiles draws one progress line per file and ends each', async () => {
    const a = join(api.dir, 'a.bin');
    const b = join(api.dir, 'b.txt');
    await writeFile(a, randomBytes(SIZE));
    await writeFile(b, 'tiny');
    const lines: { label: string; total: number; updates: number[]; done: number }[] = [];
    const result = await publishWithFiles(
      client,
      {
        type: 'upload.progress',
        data: [],
        files: [
          { path: 'a.bin', from: a },
          { path: 'b.txt', from: b },
        ],
      },
      (label, total) => {
        const line = { label, total, updates: [] as number[], done: 0 };
        lines.push(line);
        return {
          update: (sent) => line.updates.push(sent),
          done: () => (line.done += 1),
        };
      },
    );
    expect(result.created).toBe(true);
    expect(lines.map((l) => [l.label, l.total, l.updates.at(-1), l.done])).toEqual([
      [`uploading ${a}`, SIZE, SIZE, 1],
      [`uploading ${b}`, 4, 4, 1],
    ]);
  });

  it('ion event publish --file prints no progress when stderr is not a terminal', async () => {
    const path = join(api.dir, 'piped.bin');
    await writeFile(path, randomBytes(SIZE));
    const res = await cli(['event', 'publish', 'upload.cli', '--file', path], { apiUrl: url, env });
    expect(res.code, res.stderr).toBe(0);
    expect(res.stderr).toBe('');
    expect(res.stdout).toMatch(/^published upload\.cli /);
  });

  // `script` (util-linux) runs the CLI on a pseudo-terminal: the one way to see the TTY branch.
  it.skipIf(!existsSync('/usr/bin/script'))(
    'ion event publish --file draws progress on a terminal, and none with --json',
    async () => {
      const path = join(api.dir, 'tty.bin');
      await writeFile(path, randomBytes(SIZE));
      const onTty = async (args: string) => {
        const command = `${process.execPath} ${join(ROOT, 'bin/ion.js')} ${args}`;
        const { stdout } = await promisify(execFile)(
          '/usr/bin/script',
          ['-qec', command, '/dev/null'],
          {
            env: { ...process.env, ...env, ION_API_URL: url },
          },
        );
        // The terminal's "clear to the end of the line", made visible for the assertions.
        return stdout.replaceAll('\x1b[K', '<EL>');
      };
      const human = await onTty(`event publish upload.tty --file ${path}`);
      expect(human).toContain(`uploading ${path}`);
      // The last drawing shows every byte, and the line ends before the command's own output.
      expect(human).toMatch(
        /3\.0 MiB \/ 3\.0 MiB {2}100% {2}[\d.]+ [KMG]?i?B\/s<EL>\r?\npublished upload\.tty /,
      );
      const json = await onTty(`event publish upload.tty --file ${path} --json`);
      expect(json).not.toContain('uploading');
      expect(JSON.parse(json)).toMatchObject({ created: true });
    },
  );
});
