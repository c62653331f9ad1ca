import { context, propagation, trace, type Attributes } from '@opentelemetry/api';
import type { EventNotice } from '../bus/message-format.js';
import { jobIdFor } from '../core/ids.js';
import type { FileRef, IonEvent, ModuleRecord } from '../core/types.js';
import { spanIdFor } from '../telemetry/trace-ids.js';
import {
  SpanKind,
  SpanStatusCode,
  derivedContext,
  remoteContext,
  type Span,
  type Tracing,
} from '../telemetry/tracing.js';
import type { AttemptEnd } from './attempt-end.js';
import type { AttemptFinished } from './deps.js';

/** The span attribute names Ion sets (docs/tracing.md lists them). */
export const ATTR = {
  module: 'ion.module',
  moduleVersion: 'ion.module.version',
  jobId: 'ion.job.id',
  attempt: 'ion.job.attempt',
  outcome: 'ion.job.outcome',
  eventId: 'ion.event.id',
  eventType: 'ion.event.type',
  correlationId: 'ion.correlation.id',
  replayId: 'ion.replay.id',
  failureKind: 'ion.failure.kind',
  failureCode: 'ion.failure.code',
  bytesIn: 'ion.bytes.in',
  bytesOut: 'ion.bytes.out',
  children: 'ion.job.children',
  moduleDurationMs: 'ion.module.duration_ms',
} as const;

function bytes(files: readonly FileRef[]): number {
  let n = 0;
  for (const f of files) n += f.size;
  return n;
}

/** Where a job's attempt span hangs: the relay hop that delivered it, else a derived parent. */
function parentOf(notice: EventNotice, event: IonEvent) {
  return (
    remoteContext(notice.traceparent) ??
    // A message without trace context (a relay with tracing off): under the span of the
    // event's raising, whose id every process derives from the event id.
    derivedContext(event.correlationId, spanIdFor('event', event.eventId))
  );
}

/**
 * The spans of one job attempt: `ion.job.attempt` with children `ion.job.prepare` (from the
 * delivery to the module's host taking the job), `ion.job.run` (the job host: job directory,
 * module, collect) and `ion.job.commit` (recording the outcome and settling the delivery).
 * Span ids of the attempt and of a successful commit derive from the job id, so other
 * processes (the relay publishing the job's child events) can name them without state.
 */
export class AttemptSpans {
  private readonly attemptSpan: Span;
  private readonly prepareSpan: Span;
  private runSpan: Span | null = null;
  private prepared = false;

  constructor(
    private readonly tracing: Tracing,
    notice: EventNotice,
    event: IonEvent,
    module: ModuleRecord,
    jobId: string,
    attempt: number,
    replayId: string | null,
    startedAt: number,
  ) {
    if (!tracing.enabled) {
      this.attemptSpan = this.prepareSpan = tracing.start('', { place: { local: true } });
      return;
    }
    const attributes: Attributes = {
      [ATTR.module]: module.name,
      [ATTR.moduleVersion]: module.version,
      [ATTR.jobId]: jobId,
      [ATTR.attempt]: attempt,
      [ATTR.eventId]: event.eventId,
      [ATTR.eventType]: event.type,
      [ATTR.correlationId]: event.correlationId,
      [ATTR.bytesIn]: bytes(event.files),
    };
    if (replayId !== null) attributes[ATTR.replayId] = replayId;
    const links =
      replayId === null
        ? []
        : [
            {
              // A replayed job links to the first attempt of the original job on the event.
              context: derivedContext(
                event.correlationId,
                spanIdFor('attempt', jobIdFor(module.name, event.eventId), 1),
              ),
              attributes: { 'ion.link': 'replay_of' },
            },
          ];
    this.attemptSpan = tracing.start(`ion.job.attempt`, {
      place: { parent: parentOf(notice, event) },
      kind: SpanKind.CONSUMER,
      spanId: spanIdFor('attempt', jobId, attempt),
      attributes,
      links,
    });
    this.prepareSpan = this.child('ion.job.prepare', startedAt);
  }

  private child(name: string, startTime?: number, spanId?: string): Span {
    const ctx = trace.setSpan(context.active(), this.attemptSpan);
    return context.with(ctx, () =>
      this.tracing.start(name, {
        place: { local: true },
        ...(spanId === undefined ? {} : { spanId }),
        ...(startTime === undefined ? {} : { startTime }),
      }),
    );
  }

  private endPrepare(): void {
    if (this.prepared) return;
    this.prepared = true;
    this.prepareSpan.end();
  }

  /** Runs `fn` with the attempt span active (log lines carry its ids). */
  within<T>(fn: () => T): T {
    return this.tracing.within(this.attemptSpan, fn);
  }

  /**
   * Ends prepare, starts the run span, and returns the trace context the module gets in its
   * environment (`TRACEPARENT`, `TRACESTATE`, `BAGGAGE`), pointing at the run span.
   */
  startRun(): Record<string, string> {
    if (!this.tracing.enabled) return {};
    this.endPrepare();
    this.runSpan = this.child('ion.job.run');
    const carrier: Record<string, string> = {};
    propagation.inject(trace.setSpan(context.active(), this.runSpan), carrier);
    const env: Record<string, string> = {};
    if (carrier.traceparent !== undefined) env.TRACEPARENT = carrier.traceparent;
    if (carrier.tracestate !== undefined) env.TRACESTATE = carrier.tracestate;
    if (carrier.baggage !== undefined) env.BAGGAGE = carrier.baggage;
    return env;
  }

  endRun(end: AttemptEnd): void {
    const span = this.runSpan;
    if (span === null) return;
    if (end.result !== null) span.setAttribute(ATTR.moduleDurationMs, end.result.durationMs);
    if (!end.ok) {
      span.setAttributes({ [ATTR.failureKind]: end.kind, [ATTR.failureCode]: end.code });
      span.setStatus({ code: SpanStatusCode.ERROR, message: end.message });
    } else {
      span.setAttribute(ATTR.bytesOut, bytes(end.outputs));
    }
    span.end();
  }

  /**
   * Records the outcome in an `ion.job.commit` span around `fn`. A successful commit raised
   * `children`: each gets an `ion.event` span under the commit, whose id derives from the
   * child's event id, so the relay (maybe in another process) hangs its hop under it
   * knowing only the outbox row.
   */
  async commit<T>(fn: () => Promise<T>, children: readonly IonEvent[] = []): Promise<T> {
    if (!this.tracing.enabled) return fn();
    const span = this.child('ion.job.commit');
    try {
      const result = await this.tracing.within(span, fn);
      this.tracing.within(span, () => {
        for (const child of children)
          this.tracing
            .start('ion.event', {
              place: { local: true },
              kind: SpanKind.PRODUCER,
              spanId: spanIdFor('event', child.eventId),
              attributes: {
                [ATTR.eventId]: child.eventId,
                [ATTR.eventType]: child.type,
                [ATTR.bytesOut]: bytes(child.files),
              },
            })
            .end();
      });
      return result;
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: String(err) });
      throw err;
    } finally {
      span.end();
    }
  }

  /** Ends the attempt span with how it ended. */
  finish(outcome: AttemptFinished['outcome'], end: AttemptEnd | null): void {
    if (!this.tracing.enabled) return;
    this.endPrepare();
    const span = this.attemptSpan;
    span.setAttribute(ATTR.outcome, outcome);
    if (end?.ok === true) {
      span.setAttributes({
        [ATTR.bytesOut]: bytes(end.outputs),
        [ATTR.children]: end.children.length,
      });
    } else if (end !== null) {
      span.setAttributes({ [ATTR.failureKind]: end.kind, [ATTR.failureCode]: end.code });
      span.setStatus({ code: SpanStatusCode.ERROR, message: end.message });
    }
    span.end();
  }
}
