import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterEach, describe, expect, it } from 'vitest';
import type { TraceView } from '../../src/api/client.js';
import { dockerClient } from '../../src/executors/docker/engine.js';
import { waitFor } from '../support/wait.js';
import { ROOT, cleanup, startIon, tempDir, writePipeline, type IonProcess } from './harness.js';

const ENGINE_SETUP_TIMEOUT_MS = 600_000;

/** ION_TEST_<KIND>_HOST when set, else the shared engine helper (never skipped). */
async function engineHost(kind: 'podman' | 'docker'): Promise<string> {
  const own = process.env[kind === 'podman' ? 'ION_TEST_PODMAN_HOST' : 'ION_TEST_DOCKER_HOST'];
  if (own !== undefined) return own;
  const helper = new URL('../support/container-engine.ts', import.meta.url);
  if (!existsSync(helper))
    throw new Error(`no ${kind} engine: test/support/container-engine.ts is missing`);
  const mod = (await import(helper.href)) as Record<
    string,
    () => Promise<{ dockerHost: string }> | undefined
  >;
  const engine = await mod[kind === 'podman' ? 'podmanEngine' : 'dockerEngine']?.();
  if (engine === undefined) throw new Error(`the engine helper has no ${kind} engine`);
  return engine.dockerHost;
}

async function containersOf(docker: Docker, label: string): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [label] } });
}

/** A trace without its ids and timings: what must be the same whatever ran the modules. */
function shape(trace: TraceView): unknown {
  const events = trace.events
    .filter((e) => e.type !== 'ion.trace.settled') // carries a trace.json with ids inside
    .map((e) => ({
      type: e.type,
      data: e.data,
      files: e.files.map((f) => `${f.path}:${f.sha256}`).sort(),
    }))
    .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
  const jobs = trace.jobs.map((j) => `${j.module}:${j.state}`).sort();
  const insights = trace.insights.map((i) => `${i.module}:${i.key}=${i.value}`).sort();
  return { events, jobs, insights };
}

for (const kind of ['podman', 'docker'] as const) {
  describe(`ion up --executor docker on ${kind}`, () => {
    let ion: IonProcess | undefined;
    const dirs: string[] = [];

    afterEach(async () => {
      await ion?.stop();
      ion = undefined;
      await cleanup(...dirs.splice(0));
    });

    it(
      'runs a job again to success once after its worker was SIGKILLed mid-run, and removes the orphan container',
      async () => {
        const host = await engineHost(kind);
        const docker = dockerClient(host);
        const dir = await tempDir();
        dirs.push(dir);
        // The first attempt hangs (its container outlives the killed worker); the next ends.
        const pipeline = await writePipeline(
          dir,
          `modules:
  - name: hang-once
    subscribes: [crash.start]
    run: { command: [sh, -c, 'echo attempt $ION_ATTEMPT; if [ "$ION_ATTEMPT" = 1 ]; then sleep 600; fi'] }
`,
        );
        const dataDir = join(dir, 'data');
        const env = { DOCKER_HOST: host };
        const args = ['--executor', 'docker'];
        ion = await startIon({ dataDir, env, args: [...args, '-f', pipeline] });
        const { correlationId } = await ion.client.publish({ type: 'crash.start' });
        const running = await waitFor(
          'the first attempt to run in a container',
          async () => {
            const [job] = (await ion!.client.trace(correlationId)).jobs;
            if (job === undefined) return undefined;
            const found = await containersOf(docker, `ion.job=${job.jobId}`);
            return found.some((c) => c.State === 'running') ? job.jobId : undefined;
          },
          60_000,
        );
        await ion.kill();
        // The orphan still runs: nothing stopped it with its worker.
        expect((await containersOf(docker, `ion.job=${running}`))[0]?.State).toBe('running');

        ion = await startIon({ dataDir, env, args });
        const job = await waitFor(
          'the job to succeed after the restart',
          async () => {
            const [j] = (await ion!.client.trace(correlationId)).jobs;
            return j?.state === 'succeeded' ? j : undefined;
          },
          90_000,
        );
        const { attempts } = await ion.client.getJob(job.jobId);
        expect(attempts.map((a) => a.outcome)).toEqual(['failed', 'succeeded']);
        expect(attempts[0]!.errorCode).toBe('worker_lost');
        await waitFor(
          'no container of the job to be left',
          async () =>
            (await containersOf(docker, `ion.job=${running}`)).length === 0 ? true : undefined,
          30_000,
        );
      },
      ENGINE_SETUP_TIMEOUT_MS,
    );

    it(
      'runs the example pipeline with every module in a container, with the same trace as processes',
      async () => {
        const host = await engineHost(kind);
        const run = async (args: string[]): Promise<TraceView> => {
          const dir = await tempDir();
          dirs.push(dir);
          ion = await startIon({
            dataDir: dir,
            env: { DOCKER_HOST: host },
            args: [
              ...args,
              '-f',
              join(ROOT, 'examples/docs/ion.yaml'),
              '--submit',
              join(ROOT, 'examples/docs/sample-event.yaml'),
            ],
          });
          const correlationId = await waitFor(
            'the example trace to settle',
            () => /See it again with: ion trace (\S+)/.exec(ion!.output())?.[1],
            120_000,
          );
          const trace = await ion.client.trace(correlationId);
          await ion.stop();
          ion = undefined;
          return trace;
        };
        const inContainers = await run(['--executor', 'docker']);
        expect(inContainers.jobs.length).toBeGreaterThan(5);
        expect(inContainers.jobs.every((j) => j.state === 'succeeded')).toBe(true);
        const asProcesses = await run([]);
        expect(shape(inContainers)).toEqual(shape(asProcesses));
        const docker = dockerClient(host);
        for (const job of inContainers.jobs)
          expect(await containersOf(docker, `ion.job=${job.jobId}`)).toEqual([]);
      },
      ENGINE_SETUP_TIMEOUT_MS,
    );
  });
}
