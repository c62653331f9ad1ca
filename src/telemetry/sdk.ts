/**
 * The OpenTelemetry SDK, loaded only when tracing is configured (telemetry.ts imports this
 * file lazily), so a process with tracing off never loads it.
 */
import { register } from 'node:module';
import { DiagLogLevel, context, diag, propagation, trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { FastifyOtelInstrumentation } from '@fastify/otel';
import { registerInstrumentations, type Instrumentation } from '@opentelemetry/instrumentation';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { UndiciInstrumentation } from '@opentelemetry/instrumentation-undici';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  ParentBasedSampler,
  RandomIdGenerator,
  SimpleSpanProcessor,
  TraceIdRatioBasedSampler,
  type IdGenerator,
  type Sampler,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import type { Logger } from 'pino';
import { errorMessage } from '../core/errors.js';
import type { TelemetryConfig } from './otel-config.js';
import { pinnedTraceId, takePinnedSpanId } from './trace-ids.js';
import { Tracing } from './tracing.js';

/** Random ids, except where Ion pinned deterministic ones for the span being started. */
class IonIdGenerator implements IdGenerator {
  private readonly random = new RandomIdGenerator();
  generateTraceId(): string {
    return pinnedTraceId() ?? this.random.generateTraceId();
  }
  generateSpanId(): string {
    return takePinnedSpanId() ?? this.random.generateSpanId();
  }
}

function samplerFor(config: TelemetryConfig['sampler']): Sampler {
  const ratio = new TraceIdRatioBasedSampler(config.ratio);
  switch (config.kind) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return ratio;
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: ratio });
    default:
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

export interface SdkOptions {
  /** Replaces the configured exporter, spans exported one by one (tests: an in-memory exporter). */
  exporter?: SpanExporter;
  /** Load the HTTP client, PostgreSQL and Fastify instrumentations (default true). */
  instrument?: boolean;
}

export interface StartedSdk {
  tracing: Tracing;
  /** Flushes what is buffered and stops exporting. */
  shutdown(): Promise<void>;
}

let esmHookRegistered = false;

/**
 * The SDK's own warnings (an export that failed: collector down, refused, timed out) as log
 * lines, at most one a minute for the same text so a collector outage does not flood the log.
 */
function diagnostics(logger: Logger): Parameters<typeof diag.setLogger>[0] {
  const last = new Map<string, number>();
  const emit = (level: 'warn' | 'error', message: string, args: unknown[]): void => {
    const now = Date.now();
    if ((last.get(message) ?? 0) > now - 60_000) return;
    last.set(message, now);
    const detail = args.map((a) => (a instanceof Error ? a.message : String(a))).join(' ');
    logger[level]({ detail: detail.slice(0, 500) }, `tracing: ${message}`);
  };
  const ignore = (): void => undefined;
  return {
    error: (message, ...args) => emit('error', message, args),
    warn: (message, ...args) => emit('warn', message, args),
    info: ignore,
    debug: ignore,
    verbose: ignore,
  };
}

/** Builds and registers the tracer provider, exporter and instrumentations. */
export function startSdk(
  config: TelemetryConfig,
  logger: Logger,
  options: SdkOptions = {},
): StartedSdk {
  const exporter: SpanExporter =
    options.exporter ??
    (config.exporter === 'console'
      ? new ConsoleSpanExporter()
      : new OTLPTraceExporter({
          url: config.tracesUrl,
          headers: config.headers,
          timeoutMillis: config.timeoutMs,
        }));
  const processor =
    options.exporter !== undefined
      ? new SimpleSpanProcessor(exporter)
      : new BatchSpanProcessor(exporter, { maxQueueSize: 8192, maxExportBatchSize: 512 });
  const provider = new NodeTracerProvider({
    resource: resourceFromAttributes({
      ...config.resourceAttributes,
      'service.name': config.serviceName,
    }),
    sampler: samplerFor(config.sampler),
    idGenerator: new IonIdGenerator(),
    spanProcessors: [processor],
  });
  provider.register();
  diag.setLogger(diagnostics(logger), DiagLogLevel.WARN);
  let unregister = (): void => undefined;
  if (options.instrument !== false) unregister = instrument(provider, logger);
  logger.info(
    {
      exporter: config.exporter,
      // The URL only: headers may carry credentials.
      url: config.exporter === 'otlp' ? config.tracesUrl : undefined,
      serviceName: config.serviceName,
      sampler: config.sampler.kind,
    },
    'tracing on',
  );
  return {
    tracing: Tracing.using(trace.getTracer('ion')),
    async shutdown() {
      unregister();
      await provider.shutdown().catch((err: unknown) => {
        logger.warn({ err: errorMessage(err) }, 'could not flush the last spans');
      });
      // Unregistered, so a later start (another app in this process) can register again.
      diag.disable();
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}

/**
 * Fastify (every instance built from now on, through its initialization channel), the HTTP
 * client (fetch and undici, through diagnostics channels) and PostgreSQL (`pg`, patched when
 * it is first imported: the ESM loader hook below sees driver imports made after this).
 */
function instrument(provider: NodeTracerProvider, logger: Logger): () => void {
  if (!esmHookRegistered) {
    try {
      // Only the driver the instrumentations patch goes through the hook: every other module
      // loads as it would without tracing.
      register('@opentelemetry/instrumentation/hook.mjs', import.meta.url, {
        data: { include: ['pg', 'pg-pool'] },
      });
      esmHookRegistered = true;
    } catch (err) {
      logger.warn({ err: errorMessage(err) }, 'tracing: the ESM hook for pg could not be set');
    }
  }
  const instrumentations: Instrumentation[] = [];
  try {
    instrumentations.push(...loadInstrumentations());
  } catch (err) {
    logger.warn({ err: errorMessage(err) }, 'tracing: an instrumentation could not be loaded');
  }
  return registerInstrumentations({ tracerProvider: provider, instrumentations });
}

function loadInstrumentations(): Instrumentation[] {
  return [
    new UndiciInstrumentation(),
    new PgInstrumentation({ requireParentSpan: true }),
    new FastifyOtelInstrumentation({ registerOnInitialization: true }),
  ];
}
