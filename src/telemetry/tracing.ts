import {
  INVALID_SPAN_CONTEXT,
  SpanKind,
  SpanStatusCode,
  context,
  trace,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type SpanContext,
  type Tracer,
} from '@opentelemetry/api';
import { formatTraceparent, parseTraceparent, traceIdFor, withPinnedIds } from './trace-ids.js';

export { SpanKind };
export type { Span, SpanContext };

/** A span that records nothing, returned by every start call when tracing is off. */
const NOOP_SPAN: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/** Where a new span sits: under a remote parent, or a root of a correlation id's trace. */
export type SpanPlace =
  | { parent: SpanContext }
  | { traceOf: string /* correlation id */ }
  | { local: true /* child of the active span */ };

export interface StartOptions {
  place: SpanPlace;
  kind?: SpanKind;
  /** A deterministic span id (see spanIdFor) when another process must name this span. */
  spanId?: string;
  attributes?: Attributes;
  links?: Link[];
  /** When the span began (epoch ms), if before now. */
  startTime?: number;
}

/**
 * Ion's spans, over the OpenTelemetry API. Injected by the composition root; `Tracing.off`
 * (no SDK loaded) makes every call a constant-time no-op, so call sites need not branch.
 */
export class Tracing {
  static readonly off = new Tracing(null);

  private constructor(private readonly tracer: Tracer | null) {}

  /** Spans go through `tracer` (from a registered SDK provider). */
  static using(tracer: Tracer): Tracing {
    return new Tracing(tracer);
  }

  get enabled(): boolean {
    return this.tracer !== null;
  }

  /** Starts a span (not made active: see {@link Tracing.within}). */
  start(name: string, options: StartOptions): Span {
    const tracer = this.tracer;
    if (tracer === null) return NOOP_SPAN;
    const { place } = options;
    let parentContext: Context;
    let traceId: string | undefined;
    if ('parent' in place) {
      parentContext = trace.setSpanContext(context.active(), { ...place.parent, isRemote: true });
    } else if ('traceOf' in place) {
      // A root in the correlation's trace: no parent, the trace id is pinned.
      parentContext = trace.deleteSpan(context.active());
      traceId = traceIdFor(place.traceOf);
    } else {
      parentContext = context.active();
    }
    const spanOptions = {
      kind: options.kind ?? SpanKind.INTERNAL,
      ...(options.attributes === undefined ? {} : { attributes: options.attributes }),
      ...(options.links === undefined ? {} : { links: options.links }),
      ...(options.startTime === undefined ? {} : { startTime: options.startTime }),
    };
    return withPinnedIds(
      {
        ...(traceId === undefined ? {} : { traceId }),
        ...(options.spanId === undefined ? {} : { spanId: options.spanId }),
      },
      () => tracer.startSpan(name, spanOptions, parentContext),
    );
  }

  /** Runs `fn` with `span` active (log lines and instrumented clients see it). */
  within<T>(span: Span, fn: () => T): T {
    if (this.tracer === null) return fn();
    return context.with(trace.setSpan(context.active(), span), fn);
  }

  /** Runs `fn` in a new child span of the active one, ended (with an error status on throw). */
  async inSpan<T>(
    name: string,
    attributes: Attributes,
    fn: (span: Span) => Promise<T>,
    options: Omit<StartOptions, 'place' | 'attributes'> & { place?: SpanPlace } = {},
  ): Promise<T> {
    if (this.tracer === null) return fn(NOOP_SPAN);
    const span = this.start(name, { place: { local: true }, ...options, attributes });
    try {
      return await this.within(span, () => fn(span));
    } catch (err) {
      failSpan(span, err);
      throw err;
    } finally {
      span.end();
    }
  }

  /** The `traceparent` of a span, or undefined when tracing is off. */
  traceparentOf(span: Span): string | undefined {
    if (this.tracer === null) return undefined;
    const sc = span.spanContext();
    return formatTraceparent({
      traceId: sc.traceId,
      spanId: sc.spanId,
      sampled: (sc.traceFlags & 1) === 1,
    });
  }

  /** The trace state of a span, serialized, when it has one. */
  tracestateOf(span: Span): string | undefined {
    const state = span.spanContext().traceState?.serialize();
    return state === undefined || state === '' ? undefined : state;
  }
}

/** A remote span context from a `traceparent` value; null when absent or malformed. */
export function remoteContext(traceparent: string | undefined): SpanContext | null {
  const parsed = parseTraceparent(traceparent);
  if (parsed === null) return null;
  return {
    traceId: parsed.traceId,
    spanId: parsed.spanId,
    traceFlags: parsed.sampled ? 1 : 0,
    isRemote: true,
  };
}

/** A span context in a correlation's trace with a derived span id (links, fallback parents). */
export function derivedContext(correlationId: string, spanId: string): SpanContext {
  return { traceId: traceIdFor(correlationId), spanId, traceFlags: 1, isRemote: true };
}

/** Marks a span failed with the error's message (no stack: the log line has the details). */
export function failSpan(span: Span, err: unknown, code?: string): void {
  const message = err instanceof Error ? err.message : String(err);
  span.setStatus({ code: SpanStatusCode.ERROR, message });
  if (code !== undefined) span.setAttribute('ion.failure.code', code);
}

export { SpanStatusCode };
