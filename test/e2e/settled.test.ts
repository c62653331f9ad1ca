import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TraceView } from '../../src/api/client.js';
import { startS3rver, type RunningS3rver } from '../support/emulators.js';
import { waitFor } from '../support/wait.js';
import {
  NATS_URL,
  POSTGRES_URL,
  dropSchema,
  startCluster,
  uniqueName,
} from './distributed-harness.js';
import { cleanup, startIon, tempDir, type IonProcess } from './harness.js';

const READ_META = `
import json, os, pathlib, sys
base = pathlib.Path(os.environ["ION_BASE_DIR"])
meta = {kv["key"]: kv["value"] for kv in json.loads((base / "in/eventmeta.json").read_text())}
def insights(pairs):
    (base / "out/insights.json").write_text(json.dumps([{"key": k, "value": str(v)} for k, v in pairs]))
`;

/** Fans a video out into FRAMES frames (default 3). */
const SPLITTER = `${READ_META}
for n in range(1, int(os.environ.get("FRAMES", "3")) + 1):
    (base / f"out/events/frame-{n}.json").write_text(json.dumps(
        [{"key": "eventType", "value": "frame.ready"}, {"key": "frame", "value": str(n)}]))
`;

/** Labels a frame; frame 2 fails its first attempt (then succeeds on the retry). */
const DETECT = `${READ_META}
if meta["frame"] == "2" and os.environ["ION_ATTEMPT"] == "1":
    sys.exit(3)
insights([("label", f"object-{meta['frame']}")])
`;

/** Fails on frame 3 with no retries: that job ends dead-lettered. */
const FRAGILE = `${READ_META}
if meta["frame"] == "3":
    sys.exit(4)
`;

/** The fan-in: what the whole video's trace holds, read from in/data/trace.json. */
const SUMMARY = `${READ_META}
trace = json.loads((base / "in/data/trace.json").read_text())
labels = sorted(i["value"] for i in trace["insights"] if i["key"] == "label")
ended = all(j["state"] in ("succeeded", "dead_lettered", "cancelled") for j in trace["jobs"])
insights([
    ("labels", ",".join(labels)),
    ("all_ended", ended),
    ("trace_jobs", len(trace["jobs"])),
    ("video", meta["video"]),
    ("root_type", meta["ion.rootEventType"]),
    ("jobs", meta["ion.jobs"]),
    ("succeeded", meta["ion.succeeded"]),
    ("dead_lettered", meta["ion.dead_lettered"]),
    ("cancelled", meta["ion.cancelled"]),
])
`;

// A fan-out pipeline with a retried job and a dead-lettered one, and a summary module
// subscribed to ion.trace.settled, through a real `ion up`.
describe('ion.trace.settled: the fan-in at the end of a trace', () => {
  let ion: IonProcess;
  let dir: string;
  let correlationId: string;
  let trace: TraceView;

  beforeAll(async () => {
    dir = await tempDir('ion-settled-');
    const scripts = { splitter: SPLITTER, detect: DETECT, fragile: FRAGILE, summary: SUMMARY };
    for (const [name, code] of Object.entries(scripts)) {
      await writeFile(join(dir, `${name}.py`), code);
    }
    const run = (name: string) => ({ command: ['python3', join(dir, `${name}.py`)] });
    ion = await startIon();
    await ion.client.applyPipeline({
      modules: [
        {
          name: 'splitter',
          subscribes: ['video.uploaded'],
          publishes: ['frame.ready'],
          run: run('splitter'),
        },
        { name: 'detect', subscribes: ['frame.ready'], run: run('detect'), retries: 2 },
        { name: 'fragile', subscribes: ['frame.ready'], run: run('fragile'), retries: 0 },
        { name: 'summary', subscribes: ['ion.trace.settled'], run: run('summary') },
      ],
    });
    const published = await ion.client.publish({
      type: 'video.uploaded',
      data: { video: 'v1.mp4' },
    });
    correlationId = published.correlationId;
    trace = await waitFor(
      'the summary job to succeed',
      async () => {
        const t = await ion.client.trace(correlationId);
        const done = t.jobs.some((j) => j.module === 'summary' && j.state === 'succeeded');
        return done ? t : undefined;
      },
      60_000,
      100,
    );
  }, 90_000);

  afterAll(async () => {
    await ion?.stop();
    await cleanup(dir, ion?.dataDir ?? '');
  });

  it('raises one ion.trace.settled event, child of the root, carrying trace.json', () => {
    const settled = trace.events.filter((e) => e.type === 'ion.trace.settled');
    expect(settled).toHaveLength(1);
    const root = trace.events.find((e) => e.parentEventId === null)!;
    expect(settled[0]).toMatchObject({
      correlationId,
      parentEventId: root.eventId,
      source: 'ion',
      sourceJobId: null,
    });
    expect(settled[0]!.files.map((f) => f.path)).toEqual(['trace.json']);
    expect(settled[0]!.metadata.map((kv) => kv.key)).toEqual([
      'video',
      'ion.rootEventId',
      'ion.rootEventType',
      'ion.jobs',
      'ion.succeeded',
      'ion.dead_lettered',
      'ion.cancelled',
    ]);
  });

  it('runs the summary exactly once, after every other job of the trace ended', () => {
    const summary = trace.jobs.filter((j) => j.module === 'summary');
    expect(summary).toHaveLength(1);
    expect(summary[0]!.attempts).toBe(1);
    const others = trace.jobs.filter((j) => j.module !== 'summary');
    expect(others).toHaveLength(7); // splitter, 3 detect, 3 fragile
    for (const job of others) {
      expect(['succeeded', 'dead_lettered']).toContain(job.state);
      expect(job.finishedAt! <= summary[0]!.createdAt).toBe(true);
    }
    const retried = others.filter((j) => j.module === 'detect' && j.attempts === 2);
    expect(retried).toHaveLength(1);
    expect(others.filter((j) => j.state === 'dead_lettered').map((j) => j.module)).toEqual([
      'fragile',
    ]);
  });

  it('gives the summary the whole trace and the counts by state', () => {
    const insights = Object.fromEntries(
      trace.insights.filter((i) => i.module === 'summary').map((i) => [i.key, i.value]),
    );
    expect(insights).toEqual({
      labels: 'object-1,object-2,object-3',
      all_ended: 'True',
      trace_jobs: '7',
      video: 'v1.mp4',
      root_type: 'video.uploaded',
      jobs: '7',
      succeeded: '6',
      dead_lettered: '1',
      cancelled: '0',
    });
  });
});

// The same fan-in with several workers: one `ion server` and three `ion worker`s on NATS,
// PostgreSQL and S3 (s3rver), each process running a settlement relay, several videos at once.
describe('ion.trace.settled with three workers: once per trace, after every job ended', () => {
  const FRAMES = 8;
  const VIDEOS = 4;
  let cluster: Awaited<ReturnType<typeof startCluster>>;
  let s3: RunningS3rver;
  let dir: string;
  const schema = uniqueName('ion_settled_');
  const traces: TraceView[] = [];

  beforeAll(async () => {
    dir = await tempDir('ion-settled-dist-');
    const scripts = { splitter: SPLITTER, detect: DETECT, fragile: FRAGILE, summary: SUMMARY };
    for (const [name, code] of Object.entries(scripts)) {
      await writeFile(join(dir, `${name}.py`), code);
    }
    const run = (name: string) => ({ command: ['python3', join(dir, `${name}.py`)] });
    s3 = await startS3rver();
    cluster = await startCluster({
      ION_BUS: 'nats',
      ION_NATS_SERVERS: NATS_URL,
      ION_NATS_STREAM: uniqueName('ION_SETTLED_'),
      ION_STORE: 'postgres',
      ION_POSTGRES_URL: POSTGRES_URL,
      ION_POSTGRES_SCHEMA: schema,
      ION_BLOB: 's3',
      ION_S3_BUCKET: uniqueName('ion-settled-'),
      ION_S3_ENDPOINT: s3.endpoint,
      ION_S3_FORCE_PATH_STYLE: 'true',
      ION_S3_ACCESS_KEY_ID: 'S3RVER',
      ION_S3_SECRET_ACCESS_KEY: 'S3RVER',
      ION_S3_CHECKSUMS: 'when_required',
    });
    await cluster.client.applyPipeline({
      modules: [
        {
          name: 'splitter',
          subscribes: ['video.uploaded'],
          publishes: ['frame.ready'],
          run: run('splitter'),
          env: { FRAMES: String(FRAMES) },
        },
        { name: 'detect', subscribes: ['frame.ready'], run: run('detect'), retries: 2 },
        { name: 'fragile', subscribes: ['frame.ready'], run: run('fragile'), retries: 0 },
        { name: 'summary', subscribes: ['ion.trace.settled'], run: run('summary') },
      ],
    });
    const published = await Promise.all(
      Array.from({ length: VIDEOS }, (_, i) =>
        cluster.client.publish({ type: 'video.uploaded', data: { video: `v${i + 1}.mp4` } }),
      ),
    );
    for (const { correlationId } of published)
      traces.push(
        await waitFor(
          `the summary of ${correlationId} to succeed`,
          async () => {
            const t = await cluster.client.trace(correlationId);
            const done = t.jobs.some((j) => j.module === 'summary' && j.state === 'succeeded');
            return done ? t : undefined;
          },
          120_000,
          200,
        ),
      );
  }, 240_000);

  afterAll(async () => {
    await cluster?.stop();
    await s3?.stop();
    await dropSchema(schema).catch(() => undefined);
    await cleanup(dir);
  });

  it('raises one settled event and runs one summary per trace, after all its other jobs', async () => {
    // Let any duplicate show up: every trace's jobs, the summary included, have ended.
    for (const t of traces) {
      const again = await cluster.client.trace(t.correlationId);
      expect(again.events.filter((e) => e.type === 'ion.trace.settled')).toHaveLength(1);
      const summary = again.jobs.filter((j) => j.module === 'summary');
      expect(summary).toHaveLength(1);
      // One attempt succeeded. Another is allowed only as what a lease lapsing under load
      // causes (the job is claimed again: worker_lost, or the late commit loses: conflict),
      // never as the module failing: the summary ran on a complete trace.json.
      const attempts = (await cluster.client.getJob(summary[0]!.jobId)).attempts;
      expect(attempts.filter((a) => a.outcome === 'succeeded')).toHaveLength(1);
      for (const a of attempts.filter((x) => x.outcome !== 'succeeded'))
        expect(a.errorCode, `attempt ${a.attempt}: ${a.error}`).toMatch(/^(worker_lost|conflict)$/);
      const others = again.jobs.filter((j) => j.module !== 'summary');
      expect(others).toHaveLength(1 + 2 * FRAMES);
      for (const job of others) expect(job.finishedAt! <= summary[0]!.createdAt).toBe(true);
      // The retried detect job (frame 2) ended before the summary started too.
      expect(others.filter((j) => j.module === 'detect' && j.attempts === 2)).toHaveLength(1);
      const insights = Object.fromEntries(
        again.insights.filter((i) => i.module === 'summary').map((i) => [i.key, i.value]),
      );
      expect(insights).toMatchObject({
        all_ended: 'True',
        jobs: String(1 + 2 * FRAMES),
        succeeded: String(2 * FRAMES),
        dead_lettered: '1',
      });
    }
  });

  it('spread the jobs over more than one worker', async () => {
    const workers = new Set<string>();
    for (const t of traces)
      for (const job of t.jobs)
        for (const a of (await cluster.client.getJob(job.jobId)).attempts) workers.add(a.workerId);
    expect(workers.size).toBeGreaterThan(1);
  });
});
