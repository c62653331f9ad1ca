import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import type Docker from 'dockerode';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FsBlobStore } from '../../src/blob/fs/fs-blob-store.js';
import type { IonEvent, ModuleRecord } from '../../src/core/types.js';
import { DirJobHost } from '../../src/executors/dir-job-host.js';
import { DockerExecutor } from '../../src/executors/docker/docker-executor.js';
import { dockerClient } from '../../src/executors/docker/engine.js';
import {
  WarmContainerLauncher,
  warmContainerExecutor,
} from '../../src/executors/docker/warm-container-executor.js';
import type { JobHostResult } from '../../src/executors/job-host.js';
import type { WarmExecutor } from '../../src/executors/warm/warm-executor.js';
import {
  ENGINE_SETUP_TIMEOUT_MS,
  RUNTIME_IMAGE,
  dockerEngine,
  podmanEngine,
} from '../support/container-engine.js';
import { waitFor } from '../support/wait.js';

const SDK_DIR = fileURLToPath(new URL('../../sdk', import.meta.url));

/**
 * A warm module in Python with Ion's SDK, run in the runtime image. Per job it does what the
 * event's `cmd` says; `ok` writes `out/data/result.txt` with what it saw: its container
 * (hostname), pid, how many jobs this process ran, the job's event, its cwd and base dir,
 * whether a previous job's output was still there, and whether `in/` could be written.
 */
const PROBE = `
import json, os, socket, sys, time
sys.path.insert(0, ${JSON.stringify(join(SDK_DIR, 'python'))})
from ion_warm import serve

JOBS = [0]

def main(job_dir):
    JOBS[0] += 1
    meta = {kv["key"]: kv["value"] for kv in json.load(open("in/eventmeta.json"))}
    cmd = meta.get("cmd", "ok")
    event = os.environ["ION_EVENT_ID"]
    for i in range(20):
        print("job %s out %d" % (event, i), flush=True)
        print("job %s err %d" % (event, i), file=sys.stderr, flush=True)
    if cmd == "crash":
        os._exit(7)
    if cmd == "hang":
        time.sleep(600)
    try:
        with open("in/data/input.txt", "a") as f:
            f.write("changed")
        inputs = "writable"
    except OSError as err:
        inputs = "read-only" if err.errno in (30, 13) else "error %d" % err.errno
    leftover = sorted(os.listdir("out/data")) + sorted(os.listdir("."))
    with open("out/data/result.txt", "w") as f:
        f.write(json.dumps({
            "host": socket.gethostname(), "pid": os.getpid(), "jobs": JOBS[0], "event": event,
            "cwd": os.getcwd(), "base": os.environ["HANDLER_BASE_DIR"], "dir": job_dir,
            "inputs": inputs, "leftover": leftover, "sock": os.environ.get("ION_CONTROL_SOCKET"),
        }))
    with open("scratch-%s" % event, "w") as f:  # left in /ion: must not reach the next job
        f.write("x")
    return 0

if __name__ == "__main__":
    serve(main)
`;

interface Seen {
  host: string;
  pid: number;
  jobs: number;
  event: string;
  cwd: string;
  base: string;
  dir: string;
  inputs: string;
  leftover: string[];
  sock: string;
}

for (const kind of ['docker', 'podman'] as const) {
  describe(`warm modules in containers on ${kind}`, () => {
    let docker: Docker;
    let dockerHost: string;
    let dataDir: string;
    let blobs: FsBlobStore;
    let host: DirJobHost;
    let warm: WarmExecutor;
    let script: string;

    const owner = `${hostname()}/${process.pid}`;
    /** This test process's warm containers on the engine (any state). */
    const ours = async (): Promise<string[]> =>
      (
        await docker.listContainers({
          all: true,
          filters: { label: [`ion.executor=docker-warm`, `ion.warm.owner=${owner}`] },
        })
      ).map((c) => c.Id);

    const makeHost = (): DirJobHost => {
      warm = warmContainerExecutor({
        host: dockerHost,
        runtimeImage: RUNTIME_IMAGE,
        runtimeMounts: [SDK_DIR],
        stopGraceMs: 500,
        homeDir: dataDir,
        logger: pino({ level: 'silent' }),
      });
      return new DirJobHost({
        kind: 'docker',
        executor: new DockerExecutor({ host: dockerHost, runtimeImage: RUNTIME_IMAGE }),
        warmExecutor: warm,
        blobs,
        dataDir,
        keepJobDirs: false,
        logger: pino({ level: 'silent' }),
      });
    };

    beforeAll(async () => {
      dockerHost = (await (kind === 'podman' ? podmanEngine() : dockerEngine())).dockerHost;
      docker = dockerClient(dockerHost);
      dataDir = await mkdtemp(join(tmpdir(), `ion-warm-${kind}-`));
      blobs = new FsBlobStore({ dir: join(dataDir, 'blobs') });
      await blobs.start();
      const modules = await mkdtemp(join(tmpdir(), 'ion-warm-modules-'));
      script = join(modules, 'probe.py');
      await writeFile(script, PROBE);
      host = makeHost();
      await host.start();
    }, ENGINE_SETUP_TIMEOUT_MS);

    afterAll(async () => {
      await host?.close();
      await blobs?.close();
      if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
      if (script !== undefined) await rm(join(script, '..'), { recursive: true, force: true });
    });

    const moduleOf = (extra: Partial<ModuleRecord> = {}): ModuleRecord => ({
      name: 'probe',
      subscribes: ['t.in'],
      publishes: [],
      run: { command: ['python3', script] },
      retries: 0,
      timeoutMs: 60_000,
      concurrency: 1,
      env: {},
      version: 1,
      paused: false,
      warm: { maxJobs: 100, idleTimeoutMs: 300_000 },
      executor: 'docker',
      createdAt: new Date().toISOString(),
      updatedAt: new Date().toISOString(),
      ...extra,
    });

    interface Run {
      jobId: string;
      event: IonEvent;
      logFile: string;
      input: string;
      result: JobHostResult;
    }

    const run = async (cmd: string, module = moduleOf(), on: DirJobHost = host): Promise<Run> => {
      const input = `input ${randomUUID()}\n`;
      const { sha256 } = await blobs.put(Readable.from([Buffer.from(input)]));
      const jobId = `job-${randomUUID()}`;
      const event: IonEvent = {
        eventId: randomUUID(),
        type: 't.in',
        correlationId: randomUUID(),
        parentEventId: null,
        source: 'api',
        sourceJobId: null,
        data: [{ key: 'cmd', value: cmd }],
        files: [{ path: 'input.txt', sha256, size: input.length }],
        createdAt: new Date().toISOString(),
      };
      const logFile = join(dataDir, 'logs', jobId, '1.log');
      const result = await on.run({
        jobId,
        attempt: 1,
        module,
        event,
        baseEnv: { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8' },
        logFile,
        signal: new AbortController().signal,
      });
      return { jobId, event, logFile, input, result };
    };

    /** What the module saw, from the output file the host collected into the blob store. */
    const seenOf = async (r: Run): Promise<Seen> => {
      const output = r.result.collected?.outputs.find((o) => o.path === 'result.txt');
      if (output === undefined)
        throw new Error(`no result.txt collected: ${JSON.stringify(r.result)}`);
      const path = join(dataDir, 'seen');
      await blobs.materialize(output.sha256, path);
      const seen = JSON.parse(await readFile(path, 'utf8')) as Seen;
      await rm(path, { force: true });
      return seen;
    };
    const logOf = (r: Run): Promise<string> => readFile(r.logFile, 'utf8');

    it('runs several jobs in one container, each with its own /ion, log and outputs', async () => {
      const runs: Run[] = [];
      for (let i = 0; i < 3; i++) runs.push(await run('ok'));
      const seen: Seen[] = [];
      for (const r of runs) {
        expect(r.result.failure).toBeNull();
        expect(r.result.execution).toMatchObject({
          exitCode: 0,
          timedOut: false,
          cancelled: false,
        });
        seen.push(await seenOf(r));
      }
      // One container, one process: the same hostname and pid, and its job count goes on.
      expect(new Set(seen.map((s) => s.host)).size).toBe(1);
      expect(new Set(seen.map((s) => s.pid)).size).toBe(1);
      expect(seen.map((s) => s.jobs)).toEqual([1, 2, 3]);
      expect(warm.ids()).toHaveLength(1);
      expect(seen[0]!.host).toBe(warm.ids()[0]);
      for (const [i, s] of seen.entries()) {
        expect(s.event).toBe(runs[i]!.event.eventId);
        expect([s.cwd, s.base, s.dir]).toEqual(['/ion', '/ion', '/ion']);
        expect(s.sock).toBe('/ion-control/control.sock');
        // Nothing of the previous job is left in /ion (its output, its scratch file).
        expect(s.leftover.sort()).toEqual(['in', 'out']);
        // The inputs are mounted read-only, as in a cold container.
        expect(s.inputs).toBe('read-only');
      }
      // Each job's log holds its own lines, up to the last on each stream, and no other job's.
      // (Ion holds back a few bytes of each stream to find the end mark, so stdout and
      // stderr may interleave mid-line, as for a warm process.)
      for (const [i, r] of runs.entries()) {
        const log = await logOf(r);
        expect(log).toContain(`job ${r.event.eventId}`);
        expect(log).toMatch(/out 19\n[^]*err 19\n|err 19\n[^]*out 19\n/);
        for (const [j, other] of runs.entries())
          if (j !== i) expect(log).not.toContain(other.event.eventId);
      }
      // The input blob is intact and the job directories are gone.
      for (const r of runs) {
        const sha = createHash('sha256').update(r.input).digest('hex');
        expect(r.result.execution?.failure).toBeUndefined();
        expect(await blobs.verify(sha)).toBe(true);
        expect(existsSync(join(dataDir, 'jobs', r.jobId))).toBe(false);
      }
    });

    it('fails a job whose container dies mid-job with module_crashed; the next job gets a new container', async () => {
      const before = await seenOf(await run('ok'));
      const crashed = await run('crash');
      expect(crashed.result.collected).toBeNull();
      expect(crashed.result.execution?.exitCode).toBe(7);
      expect(crashed.result.execution?.failure?.code).toBe('module_crashed');
      expect(crashed.result.execution?.failure?.message).toBe(
        'the warm container exited with code 7 in the middle of the job',
      );
      // What it printed before it died is in its log.
      const crashLog = await logOf(crashed);
      expect(crashLog).toContain(`job ${crashed.event.eventId}`);
      expect(crashLog).toMatch(/out 19\n[^]*err 19\n|err 19\n[^]*out 19\n/);
      const after = await seenOf(await run('ok'));
      expect(after.host).not.toBe(before.host);
      expect(after.jobs).toBe(1);
      // The crashed container is removed, not left stopped.
      await waitFor('one warm container of ours', async () =>
        (await ours()).length === 1 ? true : undefined,
      );
    });

    it('kills a container past the job timeout and starts a fresh one next', async () => {
      const before = await seenOf(await run('ok'));
      const hung = await run('hang', moduleOf({ timeoutMs: 3000 }));
      expect(hung.result.execution?.timedOut).toBe(true);
      expect(hung.result.collected).toBeNull();
      expect(await logOf(hung)).toContain(
        '[ion] timed out after 3000 ms: killing the warm container',
      );
      const after = await seenOf(await run('ok'));
      expect(after.host).not.toBe(before.host);
    });

    it('stops the container of a cancelled job, and replaces a container after maxJobs', async () => {
      const recycled = moduleOf({ name: 'recycled', warm: { maxJobs: 2, idleTimeoutMs: 300_000 } });
      const [a, b, c] = [
        await seenOf(await run('ok', recycled)),
        await seenOf(await run('ok', recycled)),
        await seenOf(await run('ok', recycled)),
      ];
      expect(b.host).toBe(a.host);
      expect(c.host).not.toBe(a.host);
      expect(c.jobs).toBe(1);

      const abort = new AbortController();
      const jobId = `job-${randomUUID()}`;
      const logFile = join(dataDir, 'logs', jobId, '1.log');
      const cancelled = host.run({
        jobId,
        attempt: 1,
        module: recycled,
        event: {
          eventId: randomUUID(),
          type: 't.in',
          correlationId: randomUUID(),
          parentEventId: null,
          source: 'api',
          sourceJobId: null,
          data: [{ key: 'cmd', value: 'hang' }],
          files: [],
          createdAt: new Date().toISOString(),
        },
        baseEnv: { PATH: '/usr/local/bin:/usr/bin:/bin', LANG: 'C.UTF-8' },
        logFile,
        signal: abort.signal,
      });
      // (The last few bytes of each stream are held back until the end mark or the end.)
      await waitFor('the hanging job to print', async () =>
        (await readFile(logFile, 'utf8').catch(() => '')).includes('err 15') ? true : undefined,
      );
      abort.abort();
      const result = await cancelled;
      expect(result.execution?.cancelled).toBe(true);
      expect(result.collected).toBeNull();
      expect(await readFile(logFile, 'utf8')).toContain(
        '[ion] run cancelled: killing the warm container',
      );
      const d = await seenOf(await run('ok', recycled));
      expect(d.host).not.toBe(c.host);
      await waitFor('the recycled and cancelled containers to be removed', async () =>
        (await docker.listContainers({ all: true, filters: { label: ['ion.module=recycled'] } }))
          .length === 1
          ? true
          : undefined,
      );
    });

    it('removes at start the warm containers of a dead Ion process of this host, and only those', async () => {
      const dead = await new Promise<number>((resolve) => {
        const child = spawn('true');
        child.once('exit', () => resolve(child.pid!));
      });
      const make = async (owner: string): Promise<string> =>
        (
          await docker.createContainer({
            Image: RUNTIME_IMAGE,
            Cmd: ['sleep', '60'],
            Labels: { 'ion.executor': 'docker-warm', 'ion.warm.owner': owner },
            HostConfig: { NetworkMode: 'none' },
          })
        ).id;
      const orphan = await make(`${hostname()}/${dead}`);
      const live = await make(`${hostname()}/1`); // pid 1 runs: its worker may be alive
      const remote = await make(`another-host-${randomUUID()}/${dead}`);
      try {
        const launcher = new WarmContainerLauncher({
          host: dockerHost,
          runtimeImage: RUNTIME_IMAGE,
        });
        await launcher.start();
        const left = (
          await docker.listContainers({
            all: true,
            filters: { label: ['ion.executor=docker-warm'] },
          })
        ).map((c) => c.Id);
        expect(left).not.toContain(orphan);
        expect(left).toContain(live);
        expect(left).toContain(remote);
      } finally {
        for (const id of [orphan, live, remote])
          await docker
            .getContainer(id)
            .remove({ force: true })
            .catch(() => undefined);
      }
    });

    it('leaves no warm container behind after close', async () => {
      const other = makeHost();
      await other.start();
      const first = await run('ok', moduleOf({ name: 'closing' }), other);
      expect(first.result.failure).toBeNull();
      expect(await ours()).toContain(
        (await docker.listContainers({ filters: { label: ['ion.module=closing'] } }))[0]?.Id,
      );
      await other.close();
      const left = await docker.listContainers({
        all: true,
        filters: { label: ['ion.module=closing', 'ion.executor=docker-warm'] },
      });
      expect(left).toEqual([]);
    });
  });
}
