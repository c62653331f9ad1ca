import { join } from 'node:path';
import { readdir } from 'node:fs/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../support/wait.js';
import { cleanup, startIon, tempDir, writePipeline, type IonProcess } from './harness.js';

// A fan-out stage raises three events; the second stage is slow enough to be killed in the
// middle. The worker process is SIGKILLed while jobs run, then started again on the same
// data directory: every job must end succeeded, each child event must exist once.
const FANOUT = `for i in 1 2 3; do printf '[{"key":"eventType","value":"crash.item"},{"key":"n","value":"%s"}]' $i > out/events/item-$i.json; done`;
const SLOW = `echo started > "$MARKERS/$ION_EVENT_ID.$ION_ATTEMPT"; sleep 3; printf '[{"key":"eventType","value":"crash.done"}]' > out/events/done.json`;

describe('a worker killed with SIGKILL in the middle of a job', () => {
  let ion: IonProcess | undefined;
  let dir: string;

  afterAll(async () => {
    await ion?.stop();
    await cleanup(dir);
  });

  it('runs every job to success once restarted, with no child event twice', async () => {
    dir = await tempDir();
    const markers = join(dir, 'markers');
    const pipeline = await writePipeline(
      dir,
      `modules:
  - name: fanout
    subscribes: [crash.start]
    publishes: [crash.item]
    run: { command: [sh, -c, ${JSON.stringify(FANOUT)}] }
  - name: slow
    subscribes: [crash.item]
    publishes: [crash.done]
    concurrency: 3
    run: { command: [sh, -c, ${JSON.stringify(`mkdir -p "$MARKERS"; ${SLOW}`)}] }
    env: { MARKERS: ${JSON.stringify(markers)} }
  - name: sink
    subscribes: [crash.done]
    run: { command: ['true'] }
`,
    );
    const dataDir = join(dir, 'data');
    ion = await startIon({ dataDir, args: ['-f', pipeline] });
    const { correlationId } = await ion.client.publish({ type: 'crash.start' });

    // Kill the worker once all three slow jobs have started.
    await waitFor(
      'three slow jobs to start',
      async () => ((await readdir(markers).catch(() => [])).length >= 3 ? true : undefined),
      60_000,
    );
    await ion.kill();

    ion = await startIon({ dataDir });
    const trace = await waitFor(
      'every job to succeed after the restart',
      async () => {
        const t = await ion!.client.trace(correlationId);
        return t.jobs.length === 7 && t.jobs.every((j) => j.state === 'succeeded') ? t : undefined;
      },
      90_000,
    );
    // 1 root + 3 items + 3 done events, each exactly once.
    expect(trace.events.map((e) => e.type).sort()).toEqual([
      'crash.done',
      'crash.done',
      'crash.done',
      'crash.item',
      'crash.item',
      'crash.item',
      'crash.start',
    ]);
    expect(new Set(trace.events.map((e) => e.eventId)).size).toBe(7);
    const slowJobs = trace.jobs.filter((j) => j.module === 'slow');
    expect(slowJobs).toHaveLength(3);
    // The killed attempts were closed as lost and run again.
    for (const job of slowJobs) {
      expect(job.attempts).toBeGreaterThanOrEqual(2);
      const { attempts } = await ion.client.getJob(job.jobId);
      expect(attempts[0]!.errorCode).toBe('worker_lost');
      expect(attempts.at(-1)!.outcome).toBe('succeeded');
    }
    // Each succeeded job committed once: one sink job per done event.
    expect(trace.jobs.filter((j) => j.module === 'sink')).toHaveLength(3);
    // The killed attempts' job directories and logs were swept at the restart: nothing of
    // them is left under the data dir (every later attempt removed its own).
    expect(await readdir(join(dataDir, 'jobs')).catch(() => [])).toEqual([]);
    const logs = await readdir(join(dataDir, 'logs'), { recursive: true });
    expect(logs.filter((name) => name.endsWith('.log'))).toEqual([]);
  });
});
