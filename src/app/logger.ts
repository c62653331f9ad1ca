import { trace } from '@opentelemetry/api';
import { pino, type Logger } from 'pino';

/** Keys whose values never reach a log line, wherever they appear in a logged object. */
const REDACT = [
  'password',
  'token',
  'secret',
  'authorization',
  '*.password',
  '*.token',
  '*.secret',
  '*.authorization',
  '*.headers.authorization',
  'req.headers.authorization',
  'env',
  '*.env',
];

/**
 * The ids of the active span, on every line logged inside one (a job attempt, an API
 * request), so a log line leads to its trace. Nothing when tracing is off: without an SDK
 * there is no active span and the OpenTelemetry API answers with a constant.
 */
function traceIds(): Record<string, string> {
  const span = trace.getActiveSpan();
  if (span === undefined) return {};
  const { traceId, spanId, traceFlags } = span.spanContext();
  if (!span.isRecording() && (traceFlags & 1) === 0) return {};
  return { trace_id: traceId, span_id: spanId };
}

/** The root logger: JSON lines on stderr, secrets redacted. Components take a child. */
export function createLogger(
  level: string,
  destination: NodeJS.WritableStream = process.stderr,
): Logger {
  return pino(
    {
      level,
      base: undefined,
      redact: { paths: REDACT, censor: '[redacted]' },
      mixin: traceIds,
    },
    destination as pino.DestinationStream,
  );
}
