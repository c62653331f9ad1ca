import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/app/logger.js';
import { telemetryConfigFrom } from '../../src/telemetry/otel-config.js';
import { startTelemetry } from '../../src/telemetry/telemetry.js';
import {
  formatTraceparent,
  parseTraceparent,
  spanIdFor,
  traceIdFor,
} from '../../src/telemetry/trace-ids.js';

describe('the OTEL_* variables', () => {
  it('leave tracing off when no exporter is configured, or when disabled', async () => {
    expect(telemetryConfigFrom({})).toBeNull();
    expect(telemetryConfigFrom({ OTEL_SERVICE_NAME: 'x' })).toBeNull();
    expect(
      telemetryConfigFrom({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://h:4318',
        OTEL_SDK_DISABLED: 'true',
      }),
    ).toBeNull();
    expect(
      telemetryConfigFrom({
        OTEL_EXPORTER_OTLP_ENDPOINT: 'http://h:4318',
        OTEL_TRACES_EXPORTER: 'none',
      }),
    ).toBeNull();
    const off = await startTelemetry({}, createLogger('silent'));
    expect(off.tracing.enabled).toBe(false);
  });

  it('turn it on with the endpoint, appending /v1/traces, with service name, headers and sampler', () => {
    const config = telemetryConfigFrom({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/',
      OTEL_SERVICE_NAME: 'ion-eu',
      OTEL_EXPORTER_OTLP_HEADERS: 'x-api-key=abc%3D,tenant=t1',
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0.25',
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=prod',
    });
    expect(config).toMatchObject({
      exporter: 'otlp',
      tracesUrl: 'http://collector:4318/v1/traces',
      serviceName: 'ion-eu',
      headers: { 'x-api-key': 'abc=', tenant: 't1' },
      sampler: { kind: 'parentbased_traceidratio', ratio: 0.25 },
      resourceAttributes: { 'deployment.environment': 'prod' },
    });
    expect(
      telemetryConfigFrom({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://c/custom' })?.tracesUrl,
    ).toBe('https://c/custom');
  });

  it('reject values that cannot be used, naming the variable', () => {
    const on = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://h:4318' };
    expect(() => telemetryConfigFrom({ ...on, OTEL_TRACES_SAMPLER: 'sometimes' })).toThrow(
      /OTEL_TRACES_SAMPLER/,
    );
    expect(() => telemetryConfigFrom({ ...on, OTEL_TRACES_SAMPLER_ARG: '2' })).toThrow(
      /OTEL_TRACES_SAMPLER_ARG/,
    );
    expect(() => telemetryConfigFrom({ OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://h' })).toThrow(
      /OTEL_EXPORTER_OTLP_ENDPOINT/,
    );
    expect(() => telemetryConfigFrom({ ...on, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).toThrow(
      /OTEL_EXPORTER_OTLP_PROTOCOL/,
    );
    expect(() => telemetryConfigFrom({ ...on, OTEL_EXPORTER_OTLP_HEADERS: 'novalue' })).toThrow(
      /OTEL_EXPORTER_OTLP_HEADERS/,
    );
  });
});

describe('trace and span ids', () => {
  it('derive the same trace id from the same correlation id, and different ones otherwise', () => {
    expect(traceIdFor('order-42')).toMatch(/^[0-9a-f]{32}$/);
    expect(traceIdFor('order-42')).toBe(traceIdFor('order-42'));
    expect(traceIdFor('order-43')).not.toBe(traceIdFor('order-42'));
    expect(spanIdFor('commit', 'job-1')).toMatch(/^[0-9a-f]{16}$/);
    expect(spanIdFor('commit', 'job-1')).not.toBe(spanIdFor('attempt', 'job-1', 1));
  });

  it('parse and format traceparent, rejecting malformed or all-zero ones', () => {
    const value = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const parsed = parseTraceparent(value);
    expect(parsed).toEqual({
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      sampled: true,
    });
    expect(formatTraceparent(parsed!)).toBe(value);
    expect(parseTraceparent('garbage')).toBeNull();
    expect(parseTraceparent(undefined)).toBeNull();
    expect(parseTraceparent(`00-${'0'.repeat(32)}-b7ad6b7169203331-01`)).toBeNull();
    expect(parseTraceparent('ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')).toBeNull();
  });
});
