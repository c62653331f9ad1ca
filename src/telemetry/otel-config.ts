import { ValidationError } from '../core/errors.js';

/** How spans leave the process, read from the standard `OTEL_*` variables. */
export interface TelemetryConfig {
  /** `otlp`: OTLP/HTTP (JSON encoding) to `tracesUrl`; `console`: one line per span on stdout. */
  exporter: 'otlp' | 'console';
  tracesUrl: string;
  headers: Record<string, string>;
  timeoutMs: number;
  serviceName: string;
  resourceAttributes: Record<string, string>;
  sampler: { kind: SamplerKind; ratio: number };
}

type SamplerKind =
  | 'always_on'
  | 'always_off'
  | 'traceidratio'
  | 'parentbased_always_on'
  | 'parentbased_always_off'
  | 'parentbased_traceidratio';

const SAMPLERS: readonly SamplerKind[] = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
];

type Env = Readonly<Record<string, string | undefined>>;

function value(env: Env, name: string): string | undefined {
  const v = env[name]?.trim();
  return v === undefined || v === '' ? undefined : v;
}

/** `key1=value1,key2=value2` (OTEL_EXPORTER_OTLP_HEADERS, OTEL_RESOURCE_ATTRIBUTES), values URL-decoded. */
function keyValues(env: Env, name: string): Record<string, string> {
  const raw = value(env, name);
  const out: Record<string, string> = {};
  if (raw === undefined) return out;
  for (const pair of raw.split(',')) {
    if (pair.trim() === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new ValidationError(`${name}: "${pair.trim()}" is not key=value`);
    const key = pair.slice(0, eq).trim();
    let v = pair.slice(eq + 1).trim();
    try {
      v = decodeURIComponent(v);
    } catch {
      throw new ValidationError(`${name}: the value of ${key} is not valid percent-encoding`);
    }
    out[key] = v;
  }
  return out;
}

function url(env: Env, name: string, raw: string): string {
  try {
    const u = new URL(raw);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('scheme');
    return u.toString();
  } catch {
    throw new ValidationError(`${name}: "${raw}" is not an http(s) URL`);
  }
}

/**
 * Reads the standard OpenTelemetry variables. Returns null (tracing off) unless an exporter is
 * configured: `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or
 * `OTEL_TRACES_EXPORTER=otlp|console`. `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`
 * turn it off whatever else is set. Throws ValidationError naming the variable when a value
 * cannot be used.
 */
export function telemetryConfigFrom(env: Env): TelemetryConfig | null {
  if (value(env, 'OTEL_SDK_DISABLED')?.toLowerCase() === 'true') return null;
  const exporterName = value(env, 'OTEL_TRACES_EXPORTER')?.toLowerCase();
  const endpoint = value(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  const tracesEndpoint = value(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  if (exporterName === 'none') return null;
  if (exporterName !== undefined && exporterName !== 'otlp' && exporterName !== 'console')
    throw new ValidationError(
      `OTEL_TRACES_EXPORTER: "${exporterName}" is not supported (otlp, console or none)`,
    );
  if (exporterName === undefined && endpoint === undefined && tracesEndpoint === undefined)
    return null;
  const protocol =
    value(env, 'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL') ??
    value(env, 'OTEL_EXPORTER_OTLP_PROTOCOL') ??
    'http/json';
  if (protocol !== 'http/json' && protocol !== 'http/protobuf')
    throw new ValidationError(
      `OTEL_EXPORTER_OTLP_PROTOCOL: "${protocol}" is not supported; Ion exports OTLP over HTTP (http/json)`,
    );
  // A signal-specific endpoint is used as is; the general one gets /v1/traces appended.
  const tracesUrl =
    tracesEndpoint !== undefined
      ? url(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', tracesEndpoint)
      : `${url(env, 'OTEL_EXPORTER_OTLP_ENDPOINT', endpoint ?? 'http://localhost:4318').replace(/\/+$/, '')}/v1/traces`;
  const timeoutRaw =
    value(env, 'OTEL_EXPORTER_OTLP_TRACES_TIMEOUT') ?? value(env, 'OTEL_EXPORTER_OTLP_TIMEOUT');
  const timeoutMs = timeoutRaw === undefined ? 10_000 : Number(timeoutRaw);
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0)
    throw new ValidationError(
      `OTEL_EXPORTER_OTLP_TIMEOUT: "${timeoutRaw}" is not a positive number of milliseconds`,
    );
  const resourceAttributes = keyValues(env, 'OTEL_RESOURCE_ATTRIBUTES');
  const serviceName =
    value(env, 'OTEL_SERVICE_NAME') ?? resourceAttributes['service.name'] ?? 'ion';
  const samplerName = (value(env, 'OTEL_TRACES_SAMPLER') ?? 'parentbased_always_on').toLowerCase();
  if (!SAMPLERS.includes(samplerName as SamplerKind))
    throw new ValidationError(
      `OTEL_TRACES_SAMPLER: "${samplerName}" is not supported (${SAMPLERS.join(', ')})`,
    );
  const ratioRaw = value(env, 'OTEL_TRACES_SAMPLER_ARG');
  const ratio = ratioRaw === undefined ? 1 : Number(ratioRaw);
  if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1)
    throw new ValidationError(
      `OTEL_TRACES_SAMPLER_ARG: "${ratioRaw}" is not a ratio between 0 and 1`,
    );
  return {
    exporter: exporterName === 'console' ? 'console' : 'otlp',
    tracesUrl,
    headers: {
      ...keyValues(env, 'OTEL_EXPORTER_OTLP_HEADERS'),
      ...keyValues(env, 'OTEL_EXPORTER_OTLP_TRACES_HEADERS'),
    },
    timeoutMs,
    serviceName,
    resourceAttributes,
    sampler: { kind: samplerName as SamplerKind, ratio },
  };
}
