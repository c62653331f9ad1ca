import { join } from 'node:path';
import { readdir } from 'node:fs/promises';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../support/wait.js';
import { cleanup, startIon, tempDir, writePipeline, type IonProcess } from './harness.js';

// SIGTERM drains: a job that finishes within the grace period commits; one that does not
// is killed and released for redelivery without counting against its retries.
describe('graceful shutdown on SIGTERM', () => {
  let ion: IonProcess | undefined;
  let dir: string;

  afterAll(async () => {
    if (ion?.proc.exitCode === null) await ion.stop();
    await cleanup(dir);
  });

  it('lets a short job finish, releases a long one, and runs it again after a restart', async () => {
    dir = await tempDir();
    const markers = join(dir, 'markers');
    const script = (seconds: number) =>
      JSON.stringify(
        `mkdir -p "$MARKERS" && touch "$MARKERS/$ION_MODULE.$ION_ATTEMPT" && if [ "$ION_ATTEMPT" = 1 ]; then sleep ${seconds}; fi`,
      );
    const pipeline = await writePipeline(
      dir,
      `modules:
  - name: short
    subscribes: [drain.go]
    run: { command: [sh, -c, ${script(1)}] }
    retries: 0
    env: { MARKERS: ${JSON.stringify(markers)} }
  - name: long
    subscribes: [drain.go]
    run: { command: [sh, -c, ${script(60)}] }
    retries: 0
    env: { MARKERS: ${JSON.stringify(markers)} }
`,
    );
    const dataDir = join(dir, 'data');
    ion = await startIon({
      dataDir,
      args: ['-f', pipeline],
      env: { ION_SHUTDOWN_GRACE_MS: '3000' },
    });
    const { eventId } = await ion.client.publish({ type: 'drain.go' });
    await waitFor(
      'both jobs to start',
      async () => ((await readdir(markers).catch(() => [])).length === 2 ? true : undefined),
      60_000,
    );

    const started = Date.now();
    expect(await ion.stop()).toBe(0);
    expect(Date.now() - started).toBeLessThan(30_000); // the 60 s job did not hold the shutdown

    ion = await startIon({ dataDir });
    const jobs = await waitFor(
      'both jobs to succeed',
      async () => {
        const list = await ion!.client.listJobs({ eventId });
        return list.length === 2 && list.every((j) => j.state === 'succeeded') ? list : undefined;
      },
      60_000,
    );
    const short = jobs.find((j) => j.module === 'short')!;
    const long = jobs.find((j) => j.module === 'long')!;
    expect(short.attempts).toBe(1); // finished within the grace period
    expect(long.attempts).toBe(2); // released, then run again: retries 0 was not spent
    const { attempts } = await ion.client.getJob(long.jobId);
    expect(attempts[0]!.errorCode).toBe('worker_lost');
  });
});
