import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { LineSplitter } from './protocol.js';

const SDK = fileURLToPath(new URL('../../../sdk', import.meta.url));

const MODULES = {
  python: {
    file: 'probe.py',
    command: 'python3',
    source: `import os, sys
sys.path.insert(0, ${JSON.stringify(join(SDK, 'python'))})
from ion_warm import serve
def main(job_dir):
    open(os.path.join(job_dir, "seen"), "w").write(os.environ["ION_EVENT_ID"])
    return 0
serve(main)
`,
  },
  node: {
    file: 'probe.mjs',
    command: process.execPath,
    source: `import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { serve } from ${JSON.stringify(join(SDK, 'node', 'ion-warm.mjs'))};
await serve((dir) => { writeFileSync(join(dir, 'seen'), process.env.ION_EVENT_ID); return 0; });
`,
  },
} as const;

let dir: string;
let server: Server | undefined;
afterEach(async () => {
  server?.close();
  await rm(dir, { recursive: true, force: true });
});

/**
 * The SDKs' other channel: in a warm container the module cannot inherit fd 3, so Ion
 * listens on a unix socket and the SDK connects to ION_CONTROL_SOCKET. Here a host process
 * plays the container's module against a socket of the test's own.
 */
describe.each(Object.entries(MODULES))('the %s SDK with ION_CONTROL_SOCKET', (_name, module) => {
  it('connects, says ready, runs a job per message and exits at end of file', async () => {
    dir = await mkdtemp(join(tmpdir(), 'ion-sdk-socket-'));
    await writeFile(join(dir, module.file), module.source);
    const path = join(dir, 'control.sock');
    const connected = new Promise<Socket>((resolve) => {
      server = createServer(resolve);
      server.listen(path);
    });
    await new Promise((resolve) => server!.once('listening', resolve));
    const child = spawn(module.command, [join(dir, module.file)], {
      cwd: dir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ION_CONTROL_SOCKET: path, ION_WARM: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const socket = await connected;
    const splitter = new LineSplitter();
    const lines: string[] = [];
    let wake: () => void = () => undefined;
    socket.on('data', (chunk: Buffer) => {
      lines.push(...splitter.push(chunk));
      wake();
    });
    const nextLine = async (): Promise<unknown> => {
      while (lines.length === 0) await new Promise<void>((resolve) => (wake = resolve));
      return JSON.parse(lines.shift()!);
    };
    expect(await nextLine()).toEqual({ type: 'ready', protocol: 1 });
    for (const id of ['e1', 'e2']) {
      socket.write(
        `${JSON.stringify({ type: 'job', id: `job-${id}`, attempt: 1, dir, env: { ION_EVENT_ID: id }, mark: 'm' })}\n`,
      );
      expect(await nextLine()).toMatchObject({ type: 'done', id: `job-${id}`, ok: true });
      expect(await readFile(join(dir, 'seen'), 'utf8')).toBe(id);
    }
    socket.end();
    expect(await exited, stderr).toBe(0);
  });
});
