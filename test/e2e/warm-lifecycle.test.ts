import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Job } from '../../src/core/types.js';
import { waitFor } from '../support/wait.js';
import {
  ROOT,
  cleanup,
  cli,
  startIon,
  tempDir,
  writePipeline,
  type IonProcess,
} from './harness.js';
import { alive, processesUnder } from './warm-harness.js';

// A warm module written with the Python SDK whose behaviour each event picks (`do`). Every
// job leaves a marker `<eventId>.<attempt>.<pid>` holding the module's VERSION_TAG.
const MODULE = `
import json, os, sys, time
sys.path.insert(0, ${JSON.stringify(join(ROOT, 'sdk/python'))})
from ion_warm import serve

def main(job_dir):
    meta = {p["key"]: p["value"] for p in json.load(open("in/eventmeta.json"))}
    do = meta.get("do", "ok")
    attempt = int(os.environ["ION_ATTEMPT"])
    name = "%s.%d.%d" % (os.environ["ION_EVENT_ID"], attempt, os.getpid())
    with open(os.path.join(os.environ["MARKERS"], name), "w") as f:
        f.write(os.environ.get("VERSION_TAG", ""))
    print("job", os.environ["ION_EVENT_ID"], "does", do)
    if do == "crash" and attempt == 1:
        os._exit(9)
    if (do == "hang" and attempt == 1) or do == "hang-always":
        time.sleep(60)
    if do == "sleep":
        time.sleep(float(meta["secs"]))
    if do == "forge":
        eid = os.environ["ION_EVENT_ID"]
        print('{"type":"done","id":"%s","ok":true}' % eid)
        print('@@ion {"type":"done","id":"%s","ok":true}' % eid)
        print("\\x1eion-end:" + "0" * 32 + "\\x1e")
        sys.stdout.flush()
        time.sleep(0.5)
        with open("out/data/late.txt", "w") as f:
            f.write("written after the forged lines")
    with open("out/data/result.txt", "w") as f:
        f.write(os.environ["ION_EVENT_ID"])
    return 0

serve(main)
`;

function pipeline(dir: string, markers: string, versionTag: string): string {
  const module = (name: string, extra: string) => `  - name: ${name}
    subscribes: [${name}.go]
    run: { command: [python3, ${JSON.stringify(join(dir, 'module.py'))}] }
    env: { MARKERS: ${JSON.stringify(markers)}, VERSION_TAG: ${versionTag} }
${extra}`;
  return `modules:
${module('w', '    warm: { maxJobs: 2 }\n    concurrency: 2\n    timeout: 10s\n    retries: 2\n')}${module('slow', '    warm: true\n    concurrency: 2\n    timeout: 30s\n    retries: 2\n')}`;
}

interface Marker {
  eventId: string;
  attempt: number;
  pid: number;
  tag: string;
}

async function markers(dir: string): Promise<Marker[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  return Promise.all(
    names.map(async (name) => {
      const [eventId, attempt, pid] = name.split('.');
      return {
        eventId: eventId!,
        attempt: Number(attempt),
        pid: Number(pid),
        tag: await readFile(join(dir, name), 'utf8'),
      };
    }),
  );
}

describe('warm module lifecycle through a real ion up', () => {
  let ion: IonProcess | undefined;
  let dir: string;

  afterEach(async () => {
    await ion?.stop();
    // Nothing of the module is left behind once Ion stopped.
    expect(await processesUnder(ion!.dataDir)).toEqual([]);
    ion = undefined;
    await cleanup(dir);
  });

  async function setUp(): Promise<{ markerDir: string; file: string }> {
    dir = await tempDir();
    const markerDir = join(dir, 'markers');
    await mkdir(markerDir);
    await writeFile(join(dir, 'module.py'), MODULE);
    const file = await writePipeline(dir, pipeline(dir, markerDir, 'v1'));
    // Modules are re-read every 200 ms, so a version change lands while jobs still run.
    ion = await startIon({
      dataDir: join(dir, 'data'),
      args: ['-f', file],
      env: { ION_MODULE_REFRESH_MS: '200' },
    });
    return { markerDir, file };
  }

  const settled = (ids: string[]) =>
    waitFor(
      `${ids.length} jobs to end`,
      async () => {
        const jobs = await Promise.all(
          ids.map(async (id) => (await ion!.client.listJobs({ eventId: id }))[0]),
        );
        return jobs.every(
          (j) => j !== undefined && ['succeeded', 'dead_lettered', 'cancelled'].includes(j.state),
        )
          ? (jobs as Job[])
          : undefined;
      },
      90_000,
    );

  it('retries a crash and a hang on fresh processes, recycles after maxJobs, ignores forged lines', async () => {
    const { markerDir } = await setUp();
    const does = ['crash', 'hang', 'forge', 'ok', 'ok', 'ok', 'ok'];
    const ids: string[] = [];
    for (const d of does)
      ids.push((await ion!.client.publish({ type: 'w.go', data: { do: d } })).eventId);
    const jobs = await settled(ids);
    for (const job of jobs) expect(job.state).toBe('succeeded');

    const attemptsOf = async (i: number) => (await ion!.client.getJob(jobs[i]!.jobId)).attempts;
    const crash = await attemptsOf(0);
    expect(crash.map((a) => a.errorCode)).toEqual(['module_crashed', null]);
    expect(crash[0]!.error).toBe('the warm process exited with code 9 in the middle of the job');
    const hang = await attemptsOf(1);
    expect(hang.map((a) => a.errorCode)).toEqual(['module_timeout', null]);

    // The forged end lines are log text: the job ended when the module returned.
    const forged = jobs[2]!;
    expect(forged.outputs.map((o) => o.path).sort()).toEqual(['late.txt', 'result.txt']);
    const { text } = await ion!.client.jobLogs(forged.jobId);
    expect(text).toContain('@@ion {"type":"done"');

    // maxJobs: 2 — no process took more than two jobs; the killed ones are gone.
    const seen = await markers(markerDir);
    const perPid = new Map<number, number>();
    for (const m of seen) perPid.set(m.pid, (perPid.get(m.pid) ?? 0) + 1);
    expect(Math.max(...perPid.values())).toBeLessThanOrEqual(2);
    expect(perPid.size).toBeLessThan(seen.length); // processes were reused
    const killed = seen.filter(
      (m) => m.attempt === 1 && (m.eventId === ids[0] || m.eventId === ids[1]),
    );
    for (const m of killed) expect(alive(m.pid)).toBe(false);
  });

  it('cancels a running warm job and kills its process', async () => {
    const { markerDir } = await setUp();
    const { eventId } = await ion!.client.publish({ type: 'slow.go', data: { do: 'hang-always' } });
    const [marker] = await waitFor('the job to start', async () => {
      const m = await markers(markerDir);
      return m.length > 0 ? m : undefined;
    });
    const [job] = await ion!.client.listJobs({ eventId });
    await ion!.client.cancelJob(job!.jobId);
    const [ended] = await settled([eventId]);
    expect(ended!.state).toBe('cancelled');
    const { attempts } = await ion!.client.getJob(job!.jobId);
    expect(attempts.at(-1)!.errorCode).toBe('job_cancelled');
    await waitFor('the process to be gone', () => (alive(marker!.pid) ? undefined : true), 10_000);
  });

  it('drains and replaces processes when the module version changes under load', async () => {
    const { markerDir } = await setUp();
    const ids: string[] = [];
    for (let i = 0; i < 20; i++)
      ids.push(
        (await ion!.client.publish({ type: 'slow.go', data: { do: 'sleep', secs: '0.3' } }))
          .eventId,
      );
    await waitFor('two jobs done on version 1', async () =>
      (await markers(markerDir)).length >= 3 ? true : undefined,
    );
    await writePipeline(dir, pipeline(dir, markerDir, 'v2'));
    const applied = await cli(['apply', '-f', join(dir, 'ion.yaml')], { apiUrl: ion!.url });
    expect(applied.code).toBe(0);
    const jobs = await settled(ids);
    for (const job of jobs) expect(job.state).toBe('succeeded');
    for (const job of jobs) expect(job.attempts).toBe(1);

    const seen = await markers(markerDir);
    expect(seen).toHaveLength(20);
    expect(jobs.filter((j) => j.moduleVersion === 2).length).toBeGreaterThan(0);
    expect(jobs.filter((j) => j.moduleVersion === 1).length).toBeGreaterThan(0);
    // A process only ever ran one version; version 1's processes exit, Ion still up.
    const tags = new Map<number, Set<string>>();
    for (const m of seen) tags.set(m.pid, (tags.get(m.pid) ?? new Set()).add(m.tag));
    for (const set of tags.values()) expect(set.size).toBe(1);
    const v1 = [...tags].filter(([, set]) => set.has('v1')).map(([pid]) => pid);
    await waitFor('version 1 processes to exit', () => (v1.some(alive) ? undefined : true), 10_000);
  });

  it('leaves no warm process behind when the worker is SIGKILLed, and finishes every job after a restart', async () => {
    const { markerDir } = await setUp();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++)
      ids.push(
        (await ion!.client.publish({ type: 'slow.go', data: { do: 'sleep', secs: '3' } })).eventId,
      );
    await waitFor('two jobs to run', async () =>
      (await markers(markerDir)).length >= 2 ? true : undefined,
    );
    const dataDir = ion!.dataDir;
    await ion!.kill();
    await waitFor(
      'the warm processes to exit after the worker died',
      async () => ((await processesUnder(dataDir)).length === 0 ? true : undefined),
      10_000,
    );
    ion = await startIon({ dataDir });
    const jobs = await settled(ids);
    for (const job of jobs) expect(job.state).toBe('succeeded');
    const lost = await Promise.all(
      jobs.map(async (j) => (await ion!.client.getJob(j.jobId)).attempts),
    );
    expect(lost.filter((a) => a[0]!.errorCode === 'worker_lost').length).toBeGreaterThanOrEqual(2);
  });
});
