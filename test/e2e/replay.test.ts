import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Job } from '../../src/core/types.js';
import { waitFor } from '../support/wait.js';
import { cleanup, cli, startIon, tempDir, writePipeline, type IonProcess } from './harness.js';

/**
 * Replay, backfill, cancel and followed logs on a real `ion up` process: modules are shell
 * scripts, jobs run as real processes, and everything is checked through the API and CLI.
 */

/** `tag` writes an insight naming its version and raises one `doc.tagged` event. */
function tagModule(version: string): string {
  return `  - name: tag
    subscribes: [doc.new]
    publishes: [doc.tagged]
    run:
      command:
        - sh
        - -c
        - |
          echo "tag ${version} on $ION_EVENT_ID"
          printf '[{"key":"version","value":"${version}"}]' > out/insights.json
          printf '[{"key":"eventType","value":"doc.tagged"},{"key":"by","value":"${version}"}]' > out/events/tagged.json
    retries: 0
`;
}

const SINK = `  - name: sink
    subscribes: [doc.tagged]
    run: { command: [sh, -c, 'echo sink got $ION_EVENT_ID'] }
    retries: 0
`;

/** Prints a numbered line every 100 ms and records its pid, until it is killed. */
const TALKER = `  - name: talker
    subscribes: [talk.start]
    run:
      command:
        - sh
        - -c
        - |
          echo $$ > "$PID_DIR/$ION_EVENT_ID.pid"
          i=0
          while true; do i=$((i+1)); echo "line $i"; sleep 0.1; done
    timeout: 5m
    retries: 0
    env: { PID_DIR: '%PID_DIR%' }
`;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('replay, backfill, cancel and followed logs on a real ion up process', () => {
  let ion: IonProcess;
  let dir: string;

  const apply = async (yaml: string) => {
    const applied = await cli(['apply', '-f', await writePipeline(dir, yaml)], {
      apiUrl: ion.url,
    });
    expect(applied.code, applied.stderr).toBe(0);
  };
  const jobsSettled = (filter: Parameters<IonProcess['client']['listJobs']>[0], n: number) =>
    waitFor(
      `${n} settled jobs for ${JSON.stringify(filter)}`,
      async () => {
        const jobs = await ion.client.listJobs(filter);
        const done = jobs.filter((j) => ['succeeded', 'dead_lettered'].includes(j.state));
        return done.length >= n && done.length === jobs.length ? jobs : undefined;
      },
      60_000,
    );

  beforeAll(async () => {
    dir = await tempDir();
    ion = await startIon();
    await apply(`modules:\n${tagModule('v1')}${SINK}${TALKER.replace('%PID_DIR%', dir)}`);
  });

  afterAll(async () => {
    await ion?.stop();
    await cleanup(dir, ion?.dataDir ?? '');
  });

  it('backfills a type with a new version, pins an old one, and links each replayed job', async () => {
    const published = [];
    for (let i = 0; i < 3; i += 1)
      published.push(await ion.client.publish({ type: 'doc.new', data: { n: String(i) } }));
    for (const p of published) await jobsSettled({ correlationId: p.correlationId }, 2);
    const originals = new Map<string, Job>();
    for (const p of published) {
      const [job] = await ion.client.listJobs({ module: 'tag', eventId: p.eventId });
      originals.set(p.eventId, job!);
    }

    // A fixed version of the module, then a backfill of every doc.new event with it.
    await apply(`modules:\n${tagModule('v2')}${SINK}${TALKER.replace('%PID_DIR%', dir)}`);
    const since = new Date(Date.now() - 10 * 60_000).toISOString();
    const dry = await ion.client.replay({ module: 'tag', type: 'doc.new', since, dryRun: true });
    expect(dry).toMatchObject({ dryRun: true, matched: 3 });
    expect(await ion.client.listReplays({ module: 'tag' })).toEqual([]);

    const started = await cli(
      ['replay', 'start', 'tag', '--type', 'doc.new', '--since', since, '--wait', '--json'],
      { apiUrl: ion.url },
    );
    expect(started.code, started.stderr).toBe(0);
    const { replay } = JSON.parse(started.stdout) as {
      replay: { replayId: string; jobs: number; states: Record<string, number> };
    };
    expect(replay.jobs).toBe(3);
    expect(replay.states.succeeded).toBe(3);

    const replayed = await ion.client.listJobs({ replayId: replay.replayId });
    expect(replayed).toHaveLength(3);
    for (const job of replayed) {
      const original = originals.get(job.eventId)!;
      expect(job.jobId).not.toBe(original.jobId);
      expect(job).toMatchObject({ module: 'tag', moduleVersion: 2, replayOf: original.jobId });
    }
    // The replay's child events are new events, and they ran downstream.
    for (const p of published) {
      const trace = await jobsSettled({ correlationId: p.correlationId }, 4);
      expect(trace.filter((j) => j.module === 'sink')).toHaveLength(2);
      const events = (await ion.client.trace(p.correlationId)).events;
      const tagged = events.filter((e) => e.type === 'doc.tagged');
      expect(tagged.map((e) => e.data.by).sort()).toEqual(['v1', 'v2']);
    }
    const v2 = await ion.client.queryInsights({ module: 'tag', key: 'version', value: 'v2' });
    expect(v2).toHaveLength(3);

    // Pinned: version 1 again on one event; its job records the version it ran.
    const one = published[0]!;
    const pinned = await ion.client.replay({ module: 'tag', version: 1, eventId: one.eventId });
    expect(pinned.replay.moduleVersion).toBe(1);
    const [pinnedJob] = await jobsSettled({ replayId: pinned.replay.replayId }, 1);
    expect(pinnedJob).toMatchObject({ state: 'succeeded', moduleVersion: 1, pinnedVersion: 1 });
    const log = await ion.client.jobLogs(pinnedJob!.jobId);
    expect(log.text).toContain(`tag v1 on ${one.eventId}`);

    const status = await cli(['replay', 'get', pinned.replay.replayId], { apiUrl: ion.url });
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toContain('1/1 done (1 succeeded)');
  });

  it('refuses replays that cannot run, with clear errors', async () => {
    const bad = [
      [['replay', 'start', 'tag', '--type', 'talk.start'], 'does not subscribe to "talk.start"'],
      [
        ['replay', 'start', 'tag', '--type', 'doc.new', '--module-version', '99'],
        'has no version 99',
      ],
      [['replay', 'start', 'nope', '--type', 'doc.new'], 'module "nope" does not exist'],
      [
        ['replay', 'start', 'tag', '--event', 'no-such-event'],
        'event no-such-event does not exist',
      ],
    ] as const;
    for (const [args, message] of bad) {
      const result = await cli([...args], { apiUrl: ion.url });
      expect(result.code, `${args.join(' ')}: ${result.stdout}${result.stderr}`).toBe(1);
      expect(result.stderr).toContain(message);
    }
    const usage = await cli(['replay', 'start', 'tag'], { apiUrl: ion.url });
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain('exactly one of --event and --type');
  });

  it('follows a running job log live, cancels it, and the module process is killed', async () => {
    const { eventId } = await ion.client.publish({ type: 'talk.start' });
    const running = await waitFor(
      'talker job running',
      async () => {
        const [job] = await ion.client.listJobs({ module: 'talker', eventId });
        return job?.state === 'running' ? job : undefined;
      },
      30_000,
    );
    const pid = Number(
      await waitFor('talker pid file', () =>
        readFile(join(dir, `${eventId}.pid`), 'utf8').catch(() => undefined),
      ),
    );
    expect(alive(pid)).toBe(true);

    // Follow through the real CLI while the module talks.
    const follower = cli(['job', 'logs', running.jobId, '--follow'], { apiUrl: ion.url });
    await waitFor(
      'live log progress in the store',
      async () => {
        const { attempts } = await ion.client.getJob(running.jobId);
        return (attempts[0]?.logSize ?? 0) > 20 ? true : undefined;
      },
      30_000,
    );

    const cancelled = await cli(['job', 'cancel', running.jobId, '--json'], { apiUrl: ion.url });
    expect(cancelled.code, cancelled.stderr).toBe(0);
    expect(JSON.parse(cancelled.stdout)).toMatchObject({ status: 'cancelling' });

    const ended = await waitFor(
      'job cancelled',
      async () => {
        const { job, attempts } = await ion.client.getJob(running.jobId);
        return job.state === 'cancelled' ? { job, attempts } : undefined;
      },
      30_000,
    );
    expect(ended.attempts).toHaveLength(1);
    expect(ended.attempts[0]).toMatchObject({ outcome: 'failed', errorCode: 'job_cancelled' });
    await waitFor('the module process to be gone', () => (alive(pid) ? undefined : true), 10_000);

    // The follower ends with the job, having printed the lines in order, none twice.
    const followed = await follower;
    expect(followed.code, followed.stderr).toBe(0);
    const lines = followed.stdout
      .split('\n')
      .filter((l) => l.startsWith('line '))
      .map((l) => Number(l.slice(5)));
    expect(lines.length).toBeGreaterThan(2);
    expect(lines).toEqual(lines.map((_, i) => lines[0]! + i));
    const full = await ion.client.jobLogs(running.jobId);
    expect(full.text).toContain(followed.stdout.split('\n').find((l) => l.startsWith('line '))!);

    // A job that ended cannot be cancelled again.
    const again = await cli(['job', 'cancel', running.jobId], { apiUrl: ion.url });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('has already ended (cancelled)');
  });

  it('cancels a replayed job that is still waiting: it never runs', async () => {
    const { eventId, correlationId } = await ion.client.publish({ type: 'doc.new' });
    await jobsSettled({ correlationId }, 2);
    const paused = await cli(['module', 'pause', 'tag'], { apiUrl: ion.url });
    expect(paused.code, paused.stderr).toBe(0);
    const { replay } = await ion.client.replay({ module: 'tag', eventId });
    const [waiting] = await ion.client.listJobs({ replayId: replay.replayId });
    expect(waiting).toMatchObject({ state: 'pending', attempts: 0 });

    expect(await ion.client.cancelJob(waiting!.jobId)).toMatchObject({
      status: 'cancelled',
      job: { state: 'cancelled' },
    });
    expect((await cli(['module', 'resume', 'tag'], { apiUrl: ion.url })).code).toBe(0);
    // Proof the module runs again: a fresh event goes through, the cancelled job never starts.
    const fresh = await ion.client.publish({ type: 'doc.new' });
    await jobsSettled({ correlationId: fresh.correlationId }, 2);
    const after = await ion.client.getJob(waiting!.jobId);
    expect(after.job.state).toBe('cancelled');
    expect(after.attempts).toEqual([]);
    expect((await ion.client.getReplay(replay.replayId)).states.cancelled).toBe(1);
  });
});
