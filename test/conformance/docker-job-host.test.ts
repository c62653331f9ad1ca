import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsBlobStore } from '../../src/blob/fs/fs-blob-store.js';
import { DirJobHost } from '../../src/executors/dir-job-host.js';
import { DockerExecutor } from '../../src/executors/docker/docker-executor.js';
import type { ContainerSettings } from '../../src/executors/executor.js';
import { dockerClient } from '../../src/executors/docker/engine.js';
import { jobHostConformance } from './job-host.suite.js';

const RUNTIME_IMAGE = 'ion/runtime:local';

interface Engine {
  kind: string;
  dockerHost: string;
}

/** A cold engine start builds the images (minutes on a busy machine). */
const ENGINE_SETUP_TIMEOUT_MS = 600_000;

/**
 * The engines of the test run: ION_TEST_PODMAN_HOST / ION_TEST_DOCKER_HOST when set (an
 * engine of one's own, with the images), else test/support/container-engine.ts, which starts
 * podman's socket and dockerd with the images. A missing engine fails the suite: it is never
 * skipped.
 */
async function engine(kind: 'podman' | 'docker'): Promise<Engine> {
  const own = process.env[kind === 'podman' ? 'ION_TEST_PODMAN_HOST' : 'ION_TEST_DOCKER_HOST'];
  if (own !== undefined) return { kind, dockerHost: own };
  const helper = new URL('../support/container-engine.ts', import.meta.url);
  if (existsSync(helper)) {
    const mod = (await import(helper.href)) as Record<string, () => Engine | Promise<Engine>>;
    const get = mod[kind === 'podman' ? 'podmanEngine' : 'dockerEngine'];
    if (get !== undefined) return get();
  }
  throw new Error(`no ${kind} engine: test/support/container-engine.ts is missing`);
}

/** Containers of one job still on the engine (any state). */
async function containersOf(docker: Docker, jobId: string): Promise<string[]> {
  const list = await docker.listContainers({
    all: true,
    filters: { label: [`ion.job=${jobId}`] },
  });
  return list.map((c) => `${c.Names[0] ?? c.Id} (${c.State})`);
}

for (const kind of ['podman', 'docker'] as const) {
  jobHostConformance(
    `DirJobHost + DockerExecutor on ${kind}`,
    async () => {
      const { dockerHost } = await engine(kind);
      const dataDir = await mkdtemp(join(tmpdir(), `ion-${kind}-host-`));
      const blobs = new FsBlobStore({ dir: join(dataDir, 'blobs') });
      await blobs.start();
      const host = new DirJobHost({
        kind: 'docker',
        executor: new DockerExecutor({
          host: dockerHost,
          runtimeImage: RUNTIME_IMAGE,
          stopGraceMs: 500,
          imageRetryDelayMs: 30_000,
        }),
        blobs,
        dataDir,
        keepJobDirs: false,
        logger: pino({ level: 'silent' }),
      });
      await host.start();
      const docker = dockerClient(dockerHost);
      return {
        host,
        blobs,
        dataDir,
        leftovers: (jobId) => containersOf(docker, jobId),
        cleanup: async () => {
          await host.close();
          await blobs.close();
          await rm(dataDir, { recursive: true, force: true });
        },
      };
    },
    {
      moduleDir: '/ion',
      enforcesMemory: true,
      runsImages: true,
      readOnlyInputMount: true,
      setupTimeoutMs: ENGINE_SETUP_TIMEOUT_MS,
    },
  );

  describe(`DockerExecutor on ${kind}`, () => {
    let dockerHost: string;
    let docker: Docker;
    let root: string;

    beforeAll(async () => {
      dockerHost = (await engine(kind)).dockerHost;
      docker = dockerClient(dockerHost);
      root = await mkdtemp(join(tmpdir(), `ion-${kind}-exec-`));
    }, ENGINE_SETUP_TIMEOUT_MS);
    afterAll(async () => rm(root, { recursive: true, force: true }));

    /** A created (not started) container labelled as one attempt of Ion's. */
    const labelled = async (jobId: string): Promise<void> => {
      await docker.createContainer({
        Image: RUNTIME_IMAGE,
        Cmd: ['sleep', '60'],
        Labels: { 'ion.job': jobId, 'ion.attempt': '1', 'ion.executor': 'docker' },
        HostConfig: { NetworkMode: 'none' },
      });
    };

    it('sweeps the containers of attempts that are not live, at start-up, and keeps the live ones', async () => {
      const dead = `job-${randomUUID()}`;
      const live = `job-${randomUUID()}`;
      await labelled(dead);
      await labelled(live);
      const asked: string[] = [];
      const executor = new DockerExecutor({
        host: dockerHost,
        runtimeImage: RUNTIME_IMAGE,
        sweepIntervalMs: 0,
        isAttemptLive: (jobId) => {
          asked.push(jobId);
          // Containers of other tests (and other runs) on the same engine are live.
          return Promise.resolve(jobId !== dead);
        },
      });
      try {
        await executor.start();
        expect(asked).toContain(dead);
        expect(await containersOf(docker, dead)).toEqual([]);
        expect(await containersOf(docker, live)).toHaveLength(1);
      } finally {
        await executor.close();
        for (const c of await docker.listContainers({
          all: true,
          filters: { label: [`ion.job=${live}`] },
        }))
          await docker.getContainer(c.Id).remove({ force: true });
      }
    });

    /** Runs one container directly on a fresh job directory; returns the result and the dir. */
    const runOnce = async (
      container: Partial<ContainerSettings>,
      command: string[],
      args: string[] = [],
    ) => {
      const workDir = join(root, randomUUID());
      for (const dir of ['in/data', 'out/data', 'out/events'])
        await mkdir(join(workDir, dir), { recursive: true });
      const executor = new DockerExecutor({ host: dockerHost, runtimeImage: RUNTIME_IMAGE });
      await executor.start();
      try {
        const result = await executor.run({
          jobId: `job-${randomUUID()}`,
          attempt: 1,
          workDir,
          command,
          args,
          env: { PATH: '/usr/local/bin:/usr/bin:/bin' },
          timeoutMs: 30_000,
          logFile: join(workDir, 'log'),
          signal: new AbortController().signal,
          container: {
            pull: 'never',
            network: 'none',
            resources: {},
            readOnlyPaths: [],
            ...container,
          },
        });
        return { result, workDir };
      } finally {
        await executor.close();
      }
    };

    it('lets a non-root user write its outputs', async () => {
      const { result, workDir } = await runOnce({ user: '65534:65534' }, [
        'sh',
        '-c',
        'id -u > out/data/uid.txt',
      ]);
      expect(result.exitCode).toBe(0);
      expect(await readFile(join(workDir, 'out/data/uid.txt'), 'utf8')).toBe('65534\n');
    });

    it('runs command as the entrypoint with args, and args alone as the CMD of an image', async () => {
      const both = await runOnce({ image: RUNTIME_IMAGE }, ['echo'], ['from', 'command']);
      expect(both.result.logTail).toBe('from command\n');
      const argsOnly = await runOnce({ image: RUNTIME_IMAGE }, [], ['sh', '-c', 'echo args only']);
      expect(argsOnly.result.logTail).toBe('args only\n');
    });

    it('has no network unless the module asks for one', async () => {
      const { result } = await runOnce({}, ['sh', '-c', 'ls /sys/class/net']);
      expect(result.logTail.trim().split(/\s+/)).toEqual(['lo']);
    });

    it('says in one line which engine address it cannot reach', async () => {
      const socket = join(root, 'no-engine.sock');
      const executor = new DockerExecutor({
        host: `unix://${socket}`,
        runtimeImage: RUNTIME_IMAGE,
      });
      const err = (await executor.start().catch((e: unknown) => e)) as Error;
      expect(err.message).toBe(
        `docker executor: cannot reach the Docker engine at unix://${socket} (set DOCKER_HOST or executor.docker.host): connect ENOENT ${socket}`,
      );
      expect(err.message).not.toContain('\n');
    });
  });
}
