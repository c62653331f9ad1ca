import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import {
  dockerClient,
  dockerEngine,
  ENGINE_SETUP_TIMEOUT_MS,
  ION_IMAGE,
  jobContainers,
  podmanEngine,
  removeJobContainers,
  RUNTIME_IMAGE,
  type ContainerEngine,
} from './container-engine.js';

const run = promisify(execFile);

/**
 * What the container executors rely on, checked on both engines through the Docker API
 * (dockerode, as the executors use it) and once through each CLI: the runtime image holds
 * sh, bash, python3, node and coreutils; a bind mount can be read-only; `none` leaves only
 * the loopback interface; the exit code comes through; the Ion image runs `ion`.
 */
describe.each([
  ['podman', podmanEngine],
  ['docker', dockerEngine],
] as const)('%s engine', (_name, getEngine) => {
  let engine: ContainerEngine;
  let dir: string;
  const job = `engine-test-${randomUUID().slice(0, 8)}`;

  beforeAll(async () => {
    engine = await getEngine();
    dir = await mkdtemp(join(tmpdir(), 'ion-engine-test-'));
    await writeFile(join(dir, 'input.txt'), 'hello from the host\n');
  }, ENGINE_SETUP_TIMEOUT_MS);

  afterAll(async () => {
    if (engine) await removeJobContainers(engine, job);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('runs the runtime image with its tools, a read-only mount and no network, and reports the exit code', async () => {
    const docker = dockerClient(engine);
    const script = [
      'set -u',
      'bash -c "echo bash \\$BASH_VERSION"',
      'python3 -c "import sys; print(\\"python\\", sys.version.split()[0])"',
      'node -e "console.log(\\"node\\", process.version)"',
      'sha256sum /in/input.txt >/dev/null && echo coreutils ok',
      'cat /in/input.txt',
      'if touch /in/new 2>/dev/null; then echo mount writable; else echo mount read-only; fi',
      'echo interfaces $(ls /sys/class/net)',
      'exit 7',
    ].join('\n');
    const container = await docker.createContainer({
      Image: RUNTIME_IMAGE,
      Cmd: ['sh', '-c', script],
      Labels: { 'ion.job': job },
      HostConfig: { Binds: [`${dir}:/in:ro`], NetworkMode: 'none' },
    });
    await container.start();
    const { StatusCode } = (await container.wait()) as { StatusCode: number };
    const output = await logsOf(container);

    expect(StatusCode).toBe(7);
    expect(output).toMatch(/^bash 5\./m);
    expect(output).toMatch(/^python 3\.11\./m);
    expect(output).toContain(`node ${process.version}`);
    expect(output).toContain('coreutils ok');
    expect(output).toContain('hello from the host');
    expect(output).toContain('mount read-only');
    expect(output).toMatch(/^interfaces lo$/m);
    await expect(readFile(join(dir, 'new'))).rejects.toThrow();

    expect((await jobContainers(engine, job)).map((c) => c.Id)).toEqual([container.id]);
    expect(await removeJobContainers(engine, job)).toBe(1);
    expect(await jobContainers(engine, job)).toEqual([]);
  });

  test('the CLI runs the Ion image with `ion` on PATH and Ion under /opt/ion', async () => {
    const { stdout } = await run(
      engine.cli,
      [
        'run',
        '--rm',
        '--network',
        'none',
        ION_IMAGE,
        'sh',
        '-c',
        'command -v ion && ion --version && ls /opt/ion',
      ],
      { env: { ...process.env, ...engine.cliEnv } },
    );
    const [ionPath, version, ...files] = stdout.trim().split('\n');
    expect(ionPath).toBe('/usr/local/bin/ion');
    expect(version).toMatch(/^\d+\.\d+\.\d+/);
    expect(files).toEqual(expect.arrayContaining(['bin', 'node_modules', 'package.json', 'src']));
  });
});

/** stdout and stderr of a stopped container, from the API's multiplexed log frames. */
async function logsOf(container: Docker.Container): Promise<string> {
  const raw = await container.logs({ stdout: true, stderr: true, follow: false });
  const parts: Buffer[] = [];
  // Each frame: 1 byte stream type, 3 zero bytes, a 4-byte big-endian length, the payload.
  for (let at = 0; at + 8 <= raw.length;) {
    const size = raw.readUInt32BE(at + 4);
    parts.push(raw.subarray(at + 8, at + 8 + size));
    at += 8 + size;
  }
  return Buffer.concat(parts).toString('utf8');
}
