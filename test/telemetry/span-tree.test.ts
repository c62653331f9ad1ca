import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { InMemorySpanExporter, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IonApp } from '../../src/app/ion-app.js';
import { createLogger } from '../../src/app/logger.js';
import { loadConfig } from '../../src/config/config.js';
import { jobIdFor } from '../../src/core/ids.js';
import { startTelemetry, type Telemetry } from '../../src/telemetry/telemetry.js';
import { spanIdFor, traceIdFor } from '../../src/telemetry/trace-ids.js';
import { waitFor } from '../support/wait.js';

// A three-module chain in process (embedded SQLite bus and store, local executor) with an
// in-memory exporter: `first` raises an event for `second`, which fails its first attempt and
// raises an event for `third` on its second; `third` always fails and is dead-lettered.
describe('the span tree of a job chain', () => {
  let dir: string;
  let app: IonApp;
  let telemetry: Telemetry;
  const exporter = new InMemorySpanExporter();
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n'))
        if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ion-spans-'));
    const config = loadConfig({
      env: { ION_RETRY_BASE_DELAY_MS: '50', ION_RETRY_MAX_DELAY_MS: '200' },
      flags: { dataDir: dir, logLevel: 'silent' },
    });
    const logger = createLogger('info', sink);
    telemetry = await startTelemetry({}, logger, { exporter, instrument: false });
    app = await IonApp.create(
      config,
      logger,
      { api: false, relay: true, workers: true },
      {},
      { telemetry },
    );
    await app.start();
  });

  afterAll(async () => {
    await app?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const attrs = (s: ReadableSpan, key: string): unknown => s.attributes[key];

  it('puts publish, relay hops and every attempt with its phases in the correlation trace', async () => {
    const marker = join(dir, 'second-failed-once');
    // Each module records the TRACEPARENT it was given as an insight.
    const record = `printf '[{"key":"traceparent","value":"%s"}]' "$TRACEPARENT" > out/insights.json`;
    await app.control.applyPipeline({
      modules: [
        {
          name: 'first',
          subscribes: ['t.start'],
          publishes: ['t.second'],
          run: {
            command: [
              'sh',
              '-c',
              `${record}; printf '[{"key":"eventType","value":"t.second"}]' > out/events/e.json`,
            ],
          },
          retries: 0,
        },
        {
          name: 'second',
          subscribes: ['t.second'],
          publishes: ['t.third'],
          run: {
            command: [
              'sh',
              '-c',
              `${record}; if [ ! -e ${marker} ]; then touch ${marker}; exit 3; fi; printf '[{"key":"eventType","value":"t.third"}]' > out/events/e.json`,
            ],
          },
          retries: 2,
        },
        {
          name: 'third',
          subscribes: ['t.third'],
          run: { command: ['sh', '-c', 'exit 7'] },
          retries: 0,
        },
      ],
    });
    const { event } = await app.control.publish({ type: 't.start' });
    const { store } = app.backends;
    await waitFor(
      'third to be dead-lettered',
      async () => {
        const letters = await store.listDeadLetters({ module: 'third' });
        return letters.length === 1 ? letters : undefined;
      },
      60_000,
    );
    const spans = await waitFor('the dead-lettered attempt span to end', () => {
      const all = exporter.getFinishedSpans();
      return all.some(
        (s) => s.name === 'ion.job.attempt' && attrs(s, 'ion.job.outcome') === 'dead_lettered',
      )
        ? all
        : undefined;
    });

    // One trace, whose id derives from the correlation id.
    const traceId = traceIdFor(event.correlationId);
    expect(new Set(spans.map((s) => s.spanContext().traceId))).toEqual(new Set([traceId]));

    const attempts = spans.filter((s) => s.name === 'ion.job.attempt');
    const byModule = (m: string): ReadableSpan[] =>
      attempts
        .filter((s) => attrs(s, 'ion.module') === m)
        .sort((a, b) => Number(attrs(a, 'ion.job.attempt')) - Number(attrs(b, 'ion.job.attempt')));
    const [first] = byModule('first');
    const seconds = byModule('second');
    const [third] = byModule('third');
    expect(first).toBeDefined();
    expect(seconds).toHaveLength(2);
    expect(third).toBeDefined();

    // Attributes: outcome, failure kind, the ids.
    expect(attrs(first!, 'ion.job.outcome')).toBe('succeeded');
    expect(attrs(first!, 'ion.correlation.id')).toBe(event.correlationId);
    expect(attrs(first!, 'ion.event.type')).toBe('t.start');
    expect(attrs(first!, 'ion.job.id')).toBe(jobIdFor('first', event.eventId));
    expect(attrs(first!, 'ion.module.version')).toBe(1);
    expect(attrs(first!, 'ion.job.children')).toBe(1);
    expect(attrs(seconds[0]!, 'ion.job.outcome')).toBe('failed');
    expect(attrs(seconds[0]!, 'ion.failure.kind')).toBe('module');
    expect(attrs(seconds[0]!, 'ion.failure.code')).toBe('module_failed');
    expect(attrs(seconds[1]!, 'ion.job.outcome')).toBe('succeeded');
    expect(attrs(third!, 'ion.job.outcome')).toBe('dead_lettered');
    expect(attrs(third!, 'ion.failure.kind')).toBe('module');

    // The attempt span id derives from the job id and attempt.
    const secondJob = String(attrs(seconds[0]!, 'ion.job.id'));
    expect(seconds[1]!.spanContext().spanId).toBe(spanIdFor('attempt', secondJob, 2));

    // Each attempt has prepare, run and commit children.
    const childrenOf = (parent: ReadableSpan): string[] =>
      spans
        .filter((s) => s.parentSpanContext?.spanId === parent.spanContext().spanId)
        .map((s) => s.name)
        .sort();
    for (const a of [first!, ...seconds, third!])
      expect(childrenOf(a)).toEqual(['ion.job.commit', 'ion.job.prepare', 'ion.job.run']);

    // Each attempt hangs under a relay hop; the hop of a child event hangs under the
    // successful commit of the job that raised it, the root's under its publish span id.
    const byId = new Map(spans.map((s) => [s.spanContext().spanId, s]));
    const hopOf = (a: ReadableSpan): ReadableSpan => {
      const hop = byId.get(a.parentSpanContext?.spanId ?? '');
      expect(hop?.name).toBe('ion.relay.publish');
      return hop!;
    };
    expect(hopOf(first!).parentSpanContext?.spanId).toBe(spanIdFor('event', event.eventId));
    const publish = byId.get(spanIdFor('event', event.eventId));
    expect(publish?.name).toBe('ion.publish');
    expect(publish?.parentSpanContext).toBeUndefined();
    const commitOf = (a: ReadableSpan): ReadableSpan | undefined =>
      spans.find(
        (s) =>
          s.name === 'ion.job.commit' && s.parentSpanContext?.spanId === a.spanContext().spanId,
      );
    // The raising of a child event: an `ion.event` span under the commit, id from the event id.
    const raisedBy = (hop: ReadableSpan): ReadableSpan | undefined => {
      const raised = byId.get(hop.parentSpanContext?.spanId ?? '');
      expect(raised?.name).toBe('ion.event');
      expect(raised?.spanContext().spanId).toBe(
        spanIdFor('event', String(attrs(hop, 'ion.event.id'))),
      );
      return byId.get(raised?.parentSpanContext?.spanId ?? '');
    };
    expect(raisedBy(hopOf(seconds[0]!))).toBe(commitOf(first!));
    // Both attempts of `second` came from the same hop (a retry is a redelivery).
    expect(hopOf(seconds[1]!).spanContext().spanId).toBe(hopOf(seconds[0]!).spanContext().spanId);
    expect(raisedBy(hopOf(third!))).toBe(commitOf(seconds[1]!));
    expect(commitOf(seconds[1]!)).toBeDefined();

    // The module got the run span's context as TRACEPARENT.
    const runOfFirst = spans.find(
      (s) =>
        s.name === 'ion.job.run' && s.parentSpanContext?.spanId === first!.spanContext().spanId,
    )!;
    const [insight] = await store.listInsights({
      module: 'first',
      key: 'traceparent',
      correlationId: event.correlationId,
    });
    const sc = runOfFirst.spanContext();
    expect(insight?.value).toBe(`00-${sc.traceId}-${sc.spanId}-01`);

    // Log lines inside an attempt carry its trace and span ids.
    const succeeded = lines.find((l) => l.msg === 'job succeeded' && l.module === 'first');
    expect(succeeded?.trace_id).toBe(traceId);
    expect(succeeded?.span_id).toBe(first!.spanContext().spanId);
    const deadLettered = lines.find((l) => l.msg === 'job dead-lettered');
    expect(deadLettered?.trace_id).toBe(traceId);
    expect(runOfFirst.spanContext().traceId).toBe(traceId);
  });
});
