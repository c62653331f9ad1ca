import { randomBytes } from 'node:crypto';

/**
 * The warm module protocol, version 1 (docs/modules.md, "Warm modules").
 *
 * The channel is an extra descriptor, fd 3 (`ION_CONTROL_FD=3`): a socket pair, one JSON
 * object per line in each direction. stdout and stderr stay purely the job's log, so
 * nothing a module prints (from any thread, or from a child process that inherited them)
 * can be taken for a protocol message: a `{"type":"done"}` printed to stdout is log text.
 *
 * Module → Ion: `{"type":"ready","protocol":1}` once, when loaded; then per job
 * `{"type":"done","id":<job id>,"ok":true|false,"exitCode"?:n,"error"?:"..."}`.
 * Ion → module: `{"type":"job","id","attempt","dir","env":{contract variables},"mark"}`.
 * Before `done` the module flushes stdout and stderr and writes the job's end mark
 * ({@link endMark}) to each: every byte before the mark is the job's log.
 * End of file on fd 3 means "exit now".
 */
export const PROTOCOL_VERSION = 1;

/** The descriptor of the control channel in the module process. */
export const CONTROL_FD = 3;

/** The longest control line accepted; longer is a protocol violation. */
export const MAX_LINE_BYTES = 64 * 1024;

/**
 * Variables set per job, sent in the job message (the rest of the env is the process's, and
 * part of its pool key): the contract variables and the attempt's W3C trace context, which
 * differs for every attempt (were it in the process's env, no job would find an idle one).
 */
const PER_JOB =
  /^(HANDLER_BASE_DIR|ION_BASE_DIR|ION_EVENT_ID|ION_EVENT_TYPE|ION_CORRELATION_ID|ION_PARENT_EVENT_ID|ION_ATTEMPT|TRACEPARENT|TRACESTATE|BAGGAGE)$/;

export interface JobMessage {
  type: 'job';
  id: string;
  attempt: number;
  dir: string;
  env: Record<string, string>;
  mark: string;
}

export type ModuleMessage =
  | { type: 'ready'; protocol: number }
  | { type: 'done'; id: string; ok: boolean; exitCode?: number; error?: string };

/** Splits a job's environment into the process's (started once) and the job's own part. */
export function splitEnv(env: Record<string, string>): {
  processEnv: Record<string, string>;
  jobEnv: Record<string, string>;
} {
  const processEnv: Record<string, string> = {};
  const jobEnv: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (PER_JOB.test(key)) jobEnv[key] = value;
    else processEnv[key] = value;
  }
  return { processEnv, jobEnv };
}

/** A fresh random mark for one job: 128 bits, unguessable by the module's other code. */
export function newMark(): string {
  return randomBytes(16).toString('hex');
}

/** The bytes the module writes to stdout and stderr to end a job's log. */
export function endMark(mark: string): Buffer {
  return Buffer.from(`\u001eion-end:${mark}\u001e`);
}

/**
 * Parses one control line from the module. Returns a string describing the violation when
 * the line is not a valid message.
 */
export function parseModuleMessage(line: string): ModuleMessage | string {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return `not JSON: ${JSON.stringify(line.slice(0, 80))}`;
  }
  if (typeof value !== 'object' || value === null) return 'not a JSON object';
  const m = value as Record<string, unknown>;
  if (m.type === 'ready') {
    if (m.protocol !== PROTOCOL_VERSION)
      return `protocol ${JSON.stringify(m.protocol)} is not supported (Ion speaks ${PROTOCOL_VERSION})`;
    return { type: 'ready', protocol: PROTOCOL_VERSION };
  }
  if (m.type === 'done') {
    if (typeof m.id !== 'string') return 'done: "id" must be a string';
    if (typeof m.ok !== 'boolean') return 'done: "ok" must be true or false';
    const done: ModuleMessage = { type: 'done', id: m.id, ok: m.ok };
    if (m.exitCode !== undefined) {
      if (!Number.isInteger(m.exitCode)) return 'done: "exitCode" must be an integer';
      done.exitCode = m.exitCode as number;
    }
    if (typeof m.error === 'string') done.error = m.error.slice(0, 2000);
    return done;
  }
  return `unknown message type ${JSON.stringify(m.type)}`;
}

/**
 * Splits a byte stream into lines. `push` returns the complete lines of a chunk; a line
 * longer than {@link MAX_LINE_BYTES} throws.
 */
export class LineSplitter {
  private rest = '';

  push(chunk: Buffer | string): string[] {
    const text = this.rest + chunk.toString();
    const lines = text.split('\n');
    this.rest = lines.pop() ?? '';
    if (Buffer.byteLength(this.rest) > MAX_LINE_BYTES)
      throw new Error(`a control line is longer than ${MAX_LINE_BYTES} bytes`);
    return lines.filter((line) => line.trim() !== '');
  }
}
