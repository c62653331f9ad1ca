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

/** The root logger: JSON lines on stderr, secrets redacted. Components take a child. */
export function createLogger(
  level: string,
  destination: NodeJS.WritableStream = process.stderr,
): Logger {
  return pino(
    { level, base: undefined, redact: { paths: REDACT, censor: '[redacted]' } },
    destination as pino.DestinationStream,
  );
}
