import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TraceView } from '../../src/api/client.js';
import { ROOT, cleanup, cli, startIon, tempDir, type IonProcess } from './harness.js';

// The example pipeline (three modules, Python + JavaScript + sh) through a real `ion up`
// process, driven only by the CLI.
describe('the example pipeline through the CLI', () => {
  let ion: IonProcess;
  let trace: TraceView;
  let correlationId: string;
  const pipelineFile = join(ROOT, 'examples/docs/ion.yaml');

  beforeAll(async () => {
    ion = await startIon();
    const applied = await cli(['apply', '-f', pipelineFile, '--json'], { apiUrl: ion.url });
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);
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
    const ids = JSON.parse(published.stdout) as { eventId: string; correlationId: string };
    correlationId = ids.correlationId;
    const traced = await cli(['trace', correlationId, '--wait', '--timeout', '60', '--json'], {
      apiUrl: ion.url,
    });
    expect(traced.code).toBe(0);
    trace = JSON.parse(traced.stdout) as TraceView;
  });

  afterAll(async () => {
    await ion?.stop();
    await cleanup(ion?.dataDir ?? '');
  });

  it('applies three modules at version 1', async () => {
    const listed = await cli(['module', 'ls', '--json'], { apiUrl: ion.url });
    const { modules } = JSON.parse(listed.stdout) as {
      modules: { name: string; version: number }[];
    };
    expect(modules.map((m) => [m.name, m.version]).sort()).toEqual([
      ['splitter', 1],
      ['summarise', 1],
      ['wordcount', 1],
    ]);
  });

  it('runs every job of the chain once and succeeds', () => {
    const byModule = (m: string) => trace.jobs.filter((j) => j.module === m);
    const chunks = trace.events.filter((e) => e.type === 'chunk.ready');
    expect(chunks.length).toBeGreaterThan(1); // the splitter fans out
    expect(byModule('splitter')).toHaveLength(1);
    expect(byModule('wordcount')).toHaveLength(chunks.length);
    expect(byModule('summarise')).toHaveLength(chunks.length);
    for (const job of trace.jobs) {
      expect(job.state).toBe('succeeded');
      expect(job.attempts).toBe(1);
    }
    expect(new Set(trace.events.map((e) => e.eventId)).size).toBe(trace.events.length);
  });

  it('links lineage: every child names its parent and shares the correlation id', () => {
    const ids = new Set(trace.events.map((e) => e.eventId));
    const root = trace.events.find((e) => e.parentEventId === null)!;
    expect(root.source).toBe('api');
    expect(root.data).toEqual({ source: 'e2e' });
    expect(root.files.map((f) => f.path).sort()).toEqual(['docs/readme.txt', 'ion.txt']);
    for (const event of trace.events) {
      expect(event.correlationId).toBe(correlationId);
      if (event !== root) expect(ids.has(event.parentEventId!)).toBe(true);
    }
  });

  it('passes files in subfolders and metadata to the next module', () => {
    const chunk = trace.events.find(
      (e) => e.type === 'chunk.ready' && e.data.document === 'docs/readme.txt',
    )!;
    expect(chunk.files[0]!.path).toMatch(/^chunks\/docs\/readme\/part-\d{3}\.txt$/);
    const counted = trace.events.find(
      (e) => e.type === 'chunk.counted' && e.parentEventId === chunk.eventId,
    )!;
    expect(counted.data.document).toBe('docs/readme.txt');
    expect(Number(counted.data.words)).toBeGreaterThan(0);
    expect(trace.insights.some((i) => i.module === 'wordcount' && i.key === 'top_word')).toBe(true);
  });

  it('prints a readable tree', async () => {
    const human = await cli(['trace', correlationId], { apiUrl: ion.url });
    expect(human.stdout).toContain('job splitter [succeeded]');
    expect(human.stdout).toMatch(/insights documents=2, chunks=\d+/);
    expect(human.stdout).toContain('file docs/readme.txt');
  });

  it('lists jobs and shows a job log', async () => {
    const listed = await cli(['job', 'ls', '--module', 'splitter', '--json'], { apiUrl: ion.url });
    const { jobs } = JSON.parse(listed.stdout) as { jobs: { jobId: string }[] };
    expect(jobs).toHaveLength(1);
    const logs = await cli(['job', 'logs', jobs[0]!.jobId], { apiUrl: ion.url });
    expect(logs.code).toBe(0);
    expect(logs.stdout).toContain('splitter');
  });

  it('runs one module locally with ion dev run, without committing', async () => {
    const chunk = trace.events.find((e) => e.type === 'chunk.ready')!;
    const out = await tempDir();
    const jobDir = join(out, 'job');
    const before = (await ion.client.listJobs({ module: 'wordcount' })).length;
    const dev = await cli(
      ['dev', 'run', 'wordcount', '--event', chunk.eventId, '--out', jobDir, '--json'],
      { apiUrl: ion.url },
    );
    expect(dev.code).toBe(0);
    const result = JSON.parse(dev.stdout) as {
      ok: boolean;
      outputs: { events: { type: string }[] };
    };
    expect(result.ok).toBe(true);
    expect(result.outputs.events.map((e) => e.type)).toEqual(['chunk.counted']);
    const input = await readFile(join(jobDir, 'in/data', chunk.files[0]!.path), 'utf8');
    expect(input.length).toBe(chunk.files[0]!.size);
    expect((await readdir(join(jobDir, 'out/events'))).length).toBe(1);
    expect((await ion.client.listJobs({ module: 'wordcount' })).length).toBe(before);
    await cleanup(out);
  });
});
