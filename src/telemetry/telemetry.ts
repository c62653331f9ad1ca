import type { Logger } from 'pino';
import { telemetryConfigFrom, type TelemetryConfig } from './otel-config.js';
import type { SdkOptions } from './sdk.js';
import { Tracing } from './tracing.js';

/** Tracing for one process: what components are given, and how to flush it at the end. */
export interface Telemetry {
  readonly tracing: Tracing;
  shutdown(): Promise<void>;
}

const OFF: Telemetry = { tracing: Tracing.off, shutdown: () => Promise.resolve() };

/** The process's one SDK (a tracer provider is global in OpenTelemetry), shared by the apps in it. */
let shared: { telemetry: Promise<Telemetry>; users: number } | null = null;

/**
 * Starts tracing as the `OTEL_*` variables in `env` say (the composition root passes its
 * environment; nothing here reads process.env). Off (no SDK loaded) when no exporter is
 * configured. Throws ValidationError naming a variable that cannot be used.
 */
export async function startTelemetry(
  env: Readonly<Record<string, string | undefined>>,
  logger: Logger,
  options: SdkOptions = {},
): Promise<Telemetry> {
  const config: TelemetryConfig | null =
    options.exporter !== undefined
      ? (telemetryConfigFrom(env) ?? {
          exporter: 'otlp',
          tracesUrl: 'http://localhost:4318/v1/traces',
          headers: {},
          timeoutMs: 10_000,
          serviceName: 'ion',
          resourceAttributes: {},
          sampler: { kind: 'parentbased_always_on', ratio: 1 },
        })
      : telemetryConfigFrom(env);
  if (config === null) return OFF;
  if (shared === null) {
    const started = import('./sdk.js').then(({ startSdk }) =>
      startSdk(config, logger.child({ component: 'telemetry' }), options),
    );
    shared = { telemetry: started, users: 0 };
  }
  const mine = shared;
  mine.users += 1;
  const sdk = await mine.telemetry;
  let closed = false;
  return {
    tracing: sdk.tracing,
    async shutdown() {
      if (closed) return;
      closed = true;
      mine.users -= 1;
      if (mine.users > 0) return;
      if (shared === mine) shared = null;
      await sdk.shutdown();
    },
  };
}
