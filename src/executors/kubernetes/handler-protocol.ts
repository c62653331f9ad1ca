import { z } from 'zod';
import { ValidationError } from '../../core/errors.js';
import type { IonEvent } from '../../core/types.js';

/**
 * What `ion handler prepare|collect` and whoever runs them (the Kubernetes job host, or any
 * other remote runner) exchange. Both ways it is small JSON, so it fits in an environment
 * variable going in and in a container's termination message coming out.
 */

/** The environment variable holding the job description, {@link HandlerJob} as JSON. */
export const HANDLER_JOB_ENV = 'ION_JOB';

/**
 * The largest `ION_JOB` value passed to a pod. Linux refuses one environment string longer
 * than 128 KiB (MAX_ARG_STRLEN) when the container starts, so the limit sits below that with
 * room for the name: an event with thousands of files or huge metadata is refused with a
 * clear message instead of a pod that never starts.
 */
export const HANDLER_JOB_MAX_BYTES = 96 * 1024;

/** The line prefix of a handler's result on its stdout (the fallback of the termination message). */
export const RESULT_PREFIX = 'ion-handler-result: ';

const keyValue = z.object({ key: z.string(), value: z.string() });
const fileRef = z.object({ path: z.string(), sha256: z.string(), size: z.number() });

const handlerJobSchema = z.object({
  jobId: z.string().min(1),
  attempt: z.number().int().min(1),
  module: z.string().min(1),
  /** prepare: the event whose files and metadata it lays out. */
  event: z
    .object({
      eventId: z.string().min(1),
      type: z.string(),
      correlationId: z.string(),
      parentEventId: z.string().nullable(),
      source: z.string(),
      sourceJobId: z.string().nullable(),
      data: z.array(keyValue),
      files: z.array(fileRef),
      createdAt: z.string(),
    })
    .optional(),
  /** collect: the event types the module may raise. */
  publishes: z.array(z.string()).optional(),
});

/** The job as the handler commands read it from `ION_JOB` (or `--job-file`). */
export type HandlerJob = z.infer<typeof handlerJobSchema>;

/** Parses a job description; a broken one is a usage error with the reason. */
export function parseHandlerJob(text: string, from: string): HandlerJob {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ValidationError(
      `${from} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  const parsed = handlerJobSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue === undefined ? '' : issue.path.join('.');
    throw new ValidationError(
      `${from} is not a job description: ${where === '' ? '' : `${where}: `}${issue?.message ?? 'invalid'}`,
    );
  }
  return parsed.data;
}

/** The event as prepare needs it, from a parsed job. */
export function handlerEvent(job: HandlerJob): IonEvent {
  if (job.event === undefined)
    throw new ValidationError('the job description has no event; prepare needs one');
  return job.event;
}

/** How a handler step ended, as it writes it to its termination message and last stdout line. */
export type HandlerResult =
  | { ok: true; inputs?: number; collected?: string }
  | { ok: false; error: { code: string; message: string } };

/** The one-line form of a result (termination messages hold at most 4096 bytes). */
export function formatResult(result: HandlerResult): string {
  if (result.ok) return JSON.stringify(result);
  const message =
    result.error.message.length > 3000
      ? `${result.error.message.slice(0, 3000)}...`
      : result.error.message;
  return JSON.stringify({ ok: false, error: { code: result.error.code, message } });
}

/**
 * A handler's result from its termination message, else from the last `ion-handler-result:`
 * line of its log; null when neither holds one (the handler crashed before writing it).
 */
export function parseResult(
  terminationMessage: string | undefined,
  log: string,
): HandlerResult | null {
  const candidates: string[] = [];
  if (terminationMessage !== undefined && terminationMessage.trim() !== '')
    candidates.push(terminationMessage.trim());
  const lines = log.split('\n');
  for (let i = lines.length - 1; i >= 0; i -= 1) {
    const line = lines[i]!;
    const at = line.indexOf(RESULT_PREFIX);
    if (at >= 0) {
      candidates.push(line.slice(at + RESULT_PREFIX.length).trim());
      break;
    }
  }
  for (const text of candidates) {
    const result = resultSchema.safeParse(safeJson(text));
    if (result.success) return result.data;
  }
  return null;
}

const resultSchema = z.union([
  z.object({
    ok: z.literal(true),
    inputs: z.number().optional(),
    collected: z.string().optional(),
  }),
  z.object({
    ok: z.literal(false),
    error: z.object({ code: z.string(), message: z.string() }),
  }),
]);

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
