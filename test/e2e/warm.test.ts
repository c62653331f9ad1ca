import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { TraceView } from '../../src/api/client.js';
import { ROOT, cleanup, cli, startIon, type IonProcess } from './harness.js';
import { processesUnder } from './warm-harness.js';

interface Run {
  trace: TraceView;
  /** Each job's log by a key that is the same in both runs (module + its event's content). */
  logs: Map<string, string>;
  dataDir: string;
}

/** Runs the example pipeline from `file` on the sample documents in a fresh `ion up`. */
async function runExample(file: string): Promise<Run> {
  let ion: IonProcess | undefined;
  try {
    ion = await startIon({ args: ['-f', join(ROOT, 'examples/docs', file)] });
    const published = await cli(
      [
        'event',
        'publish',
        'document.uploaded',
        '--data',
        'source=e2e',
        '--file',
        'docs/readme.txt=examples/docs/sample/readme.txt',
        '--file',
        'examples/docs/sample/notes/ion.txt',
        '--json',
      ],
      { apiUrl: ion.url },
    );
    expect(published.code).toBe(0);
    const { correlationId } = JSON.parse(published.stdout) as { correlationId: string };
    const traced = await cli(['trace', correlationId, '--wait', '--timeout', '60', '--json'], {
      apiUrl: ion.url,
    });
    expect(traced.code).toBe(0);
    const trace = JSON.parse(traced.stdout) as TraceView;
    const logs = new Map<string, string>();
    for (const job of trace.jobs) {
      const event = trace.events.find((e) => e.eventId === job.eventId)!;
      const { text } = await ion.client.jobLogs(job.jobId);
      logs.set(`${job.module} ${JSON.stringify([event.data, event.files])}`, text);
    }
    return { trace, logs, dataDir: ion.dataDir };
  } finally {
    await ion?.stop();
  }
}

/** What must not depend on warm or cold: ids and times removed, order made stable. */
function shape(trace: TraceView) {
  const typeOf = new Map(trace.events.map((e) => [e.eventId, e.type]));
  const sorted = <T>(items: T[]) => items.map((i) => JSON.stringify(i)).sort();
  return {
    // Ion's own events (`ion.trace.settled`) carry ids and times: not the modules' doing.
    events: sorted(
      trace.events
        .filter((e) => !e.type.startsWith('ion.'))
        .map((e) => ({
          type: e.type,
          parent: e.parentEventId === null ? null : typeOf.get(e.parentEventId),
          data: e.data,
          files: e.files.map((f) => [f.path, f.sha256, f.size]),
        })),
    ),
    jobs: sorted(
      trace.jobs.map((j) => ({
        module: j.module,
        state: j.state,
        attempts: j.attempts,
        outputs: j.outputs.map((f) => [f.path, f.sha256]),
      })),
    ),
    insights: sorted(trace.insights.map((i) => [i.module, i.key, i.value])),
  };
}

/** A job's log without Ion's own notes (a warm process announces itself when ready). */
const moduleOutput = (log: string) =>
  log
    .split('\n')
    .filter((line) => !line.startsWith('[ion] '))
    .join('\n');

describe('the example pipeline, cold and warm', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    await cleanup(...dirs);
  });

  it('gives the same trace, outputs, insights, child events and job logs', async () => {
    const cold = await runExample('ion.yaml');
    dirs.push(cold.dataDir);
    const warm = await runExample('ion-warm.yaml');
    dirs.push(warm.dataDir);

    expect(shape(warm.trace)).toEqual(shape(cold.trace));
    for (const job of warm.trace.jobs) expect(job.state).toBe('succeeded');
    expect([...warm.logs.keys()].sort()).toEqual([...cold.logs.keys()].sort());
    for (const [key, log] of cold.logs) expect(moduleOutput(warm.logs.get(key)!)).toBe(log);

    // The warm run really was warm: wordcount's 5 jobs ran in at most 4 (its concurrency)
    // processes, each announced once in the log of the job that started it.
    const wordcountLogs = [...warm.logs].filter(([key]) => key.startsWith('wordcount '));
    expect(wordcountLogs.length).toBeGreaterThan(4);
    const started = wordcountLogs.filter(([, log]) => log.includes('[ion] warm process '));
    expect(started.length).toBeGreaterThanOrEqual(1);
    expect(started.length).toBeLessThanOrEqual(4);
    for (const [, log] of cold.logs) expect(log).not.toContain('[ion] warm process');

    // Shut down: no module process is left behind.
    expect(await processesUnder(warm.dataDir)).toEqual([]);
  });
});
